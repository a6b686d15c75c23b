// See attention_tiles_onednn.h.
#include "omni/nn/attention_tiles_onednn.h"

#ifdef OMNI_HAVE_ONEDNN
#include <algorithm>
#include <vector>

#include "omni/nn/onednn_util.h"
#endif

namespace omni::nn::detail {

#ifdef OMNI_HAVE_ONEDNN
using dnnl::memory;
using Tag = memory::format_tag;
using onednn::matmul_pd;

// The primitives, shared by the workers: [0] for `rows` query rows, [1] for the last block's.
struct PackedTileGemms::Plan {
  const dnnl::engine& eng = onednn::cpu_engine();
  int64_t rows = 0, last_rows = 0, S = 0, D = 0;
  memory::desc q_md[2], scores_md[2], out_md[2], k_md, v_md;  // the caller's layouts
  memory::desc k_packed, v_packed;                            // the primitives' weights layouts
  dnnl::matmul qk[2], pv[2];
  dnnl::reorder pack_k, pack_v;
  memory::desc qk_scratch[2], pv_scratch[2], pack_k_scratch, pack_v_scratch;
  size_t scratch_bytes = 0;
};

std::unique_ptr<PackedTileGemms> PackedTileGemms::create(at::ScalarType st, int64_t rows, int64_t last_rows, int64_t S,
                                                         int64_t D, int64_t q_stride, int64_t k_stride,
                                                         int64_t v_stride, int64_t o_stride) {
  if ((st != at::kFloat && st != at::kBFloat16) || rows <= 0 || last_rows <= 0 || S <= 0 || D <= 0) return nullptr;
  const auto dt = onednn::data_type(st);
  try {
    auto p = std::make_unique<Plan>();
    p->rows = rows, p->last_rows = last_rows, p->S = S, p->D = D;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // one per worker: concurrent execution
    const memory::desc k_any({D, S}, dt, Tag::any), v_any({S, D}, dt, Tag::any);
    p->k_md = memory::desc({D, S}, dt, memory::dims{1, k_stride});  // Kᵀ, read in place
    p->v_md = memory::desc({S, D}, dt, memory::dims{v_stride, 1});
    for (int i = 0; i < 2; ++i) {
      const int64_t n = i == 0 ? rows : last_rows;
      p->q_md[i] = memory::desc({n, D}, dt, memory::dims{q_stride, 1});
      p->scores_md[i] = memory::desc({n, S}, dt, Tag::ab);
      p->out_md[i] = memory::desc({n, D}, dt, memory::dims{o_stride, 1});
      const auto qk = matmul_pd(p->q_md[i], k_any, p->scores_md[i], attr);
      const auto pv = matmul_pd(p->scores_md[i], v_any, p->out_md[i], attr);
      if (i == 0) {
        p->k_packed = qk.weights_desc(), p->v_packed = pv.weights_desc();
      } else if (qk.weights_desc() != p->k_packed || pv.weights_desc() != p->v_packed) {
        return nullptr;  // the last block would want K or V packed differently
      }
      p->qk[i] = dnnl::matmul(qk), p->pv[i] = dnnl::matmul(pv);
      p->qk_scratch[i] = qk.scratchpad_desc(), p->pv_scratch[i] = pv.scratchpad_desc();
    }
    const dnnl::reorder::primitive_desc pack_k(p->eng, p->k_md, p->eng, p->k_packed, attr);
    const dnnl::reorder::primitive_desc pack_v(p->eng, p->v_md, p->eng, p->v_packed, attr);
    p->pack_k = dnnl::reorder(pack_k), p->pack_v = dnnl::reorder(pack_v);
    p->pack_k_scratch = pack_k.scratchpad_desc(), p->pack_v_scratch = pack_v.scratchpad_desc();
    for (const auto* md : {&p->qk_scratch[0], &p->qk_scratch[1], &p->pv_scratch[0], &p->pv_scratch[1],
                           &p->pack_k_scratch, &p->pack_v_scratch})
      p->scratch_bytes = std::max(p->scratch_bytes, md->get_size());
    return std::unique_ptr<PackedTileGemms>(new PackedTileGemms(std::move(p)));
  } catch (const dnnl::error&) {
    return nullptr;
  }
}

struct PackedTileGemms::Worker::State {
  const Plan& plan;
  dnnl::stream stream;
  std::vector<unsigned char> scratch;
  memory k_packed, v_packed;  // owned by oneDNN, in the primitives' layouts

  explicit State(const Plan& p)
      : plan(p), stream(p.eng), scratch(p.scratch_bytes + 64), k_packed(p.k_packed, p.eng),
        v_packed(p.v_packed, p.eng) {}
  memory scratchpad(const memory::desc& md) { return memory(md, plan.eng, scratch.data()); }
  int which(int64_t n) const { return n == plan.rows ? 0 : 1; }
};

PackedTileGemms::Worker::Worker(const PackedTileGemms& gemms) : s_(std::make_unique<State>(*gemms.plan_)) {}
PackedTileGemms::Worker::~Worker() = default;

void PackedTileGemms::Worker::pack(const void* k, const void* v) {
  const Plan& p = s_->plan;
  memory ks(p.k_md, p.eng, const_cast<void*>(k)), vs(p.v_md, p.eng, const_cast<void*>(v));
  p.pack_k.execute(s_->stream, {{DNNL_ARG_FROM, ks}, {DNNL_ARG_TO, s_->k_packed},
                                {DNNL_ARG_SCRATCHPAD, s_->scratchpad(p.pack_k_scratch)}});
  p.pack_v.execute(s_->stream, {{DNNL_ARG_FROM, vs}, {DNNL_ARG_TO, s_->v_packed},
                                {DNNL_ARG_SCRATCHPAD, s_->scratchpad(p.pack_v_scratch)}});
}

void PackedTileGemms::Worker::scores(void* scores, const void* q, int64_t n) {
  const Plan& p = s_->plan;
  const int i = s_->which(n);
  memory a(p.q_md[i], p.eng, const_cast<void*>(q)), c(p.scores_md[i], p.eng, scores);
  p.qk[i].execute(s_->stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, s_->k_packed}, {DNNL_ARG_DST, c},
                               {DNNL_ARG_SCRATCHPAD, s_->scratchpad(p.qk_scratch[i])}});
}

void PackedTileGemms::Worker::values(void* out, const void* probs, int64_t n) {
  const Plan& p = s_->plan;
  const int i = s_->which(n);
  memory a(p.scores_md[i], p.eng, const_cast<void*>(probs)), c(p.out_md[i], p.eng, out);
  p.pv[i].execute(s_->stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, s_->v_packed}, {DNNL_ARG_DST, c},
                               {DNNL_ARG_SCRATCHPAD, s_->scratchpad(p.pv_scratch[i])}});
}

#else  // no oneDNN in this build

struct PackedTileGemms::Plan {};
struct PackedTileGemms::Worker::State {};
std::unique_ptr<PackedTileGemms> PackedTileGemms::create(at::ScalarType, int64_t, int64_t, int64_t, int64_t, int64_t,
                                                         int64_t, int64_t, int64_t) {
  return nullptr;
}
PackedTileGemms::Worker::Worker(const PackedTileGemms&) {}
PackedTileGemms::Worker::~Worker() = default;
void PackedTileGemms::Worker::pack(const void*, const void*) {}
void PackedTileGemms::Worker::scores(void*, const void*, int64_t) {}
void PackedTileGemms::Worker::values(void*, const void*, int64_t) {}

#endif

PackedTileGemms::PackedTileGemms(std::unique_ptr<Plan> plan) : plan_(std::move(plan)) {}
PackedTileGemms::~PackedTileGemms() = default;

}  // namespace omni::nn::detail
