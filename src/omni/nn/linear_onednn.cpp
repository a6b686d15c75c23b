// See linear_onednn.h.
#include "omni/nn/linear_onednn.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <unordered_map>

#ifdef OMNI_HAVE_ONEDNN
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/onednn_pack.h"
#include "omni/nn/onednn_util.h"
#endif

namespace omni::nn::detail {

namespace {
// Below these the packing costs more than the packed kernel gains: oneDNN's reorder from the
// checkpoint's [N, K] layout runs at ~4 GB/s, from the transposed storage
// (store_linear_weights_transposed) at 7-14 GB/s, onednn_pack.h's at 24-45 GB/s (level with
// torch's linear at 256 rows, 1.06-1.12x at 384).
constexpr int64_t kMinRows = 1024, kMinRowsTransposed = 512, kMinRowsOwnPacker = 384;
}  // namespace

bool onednn_built() {
#ifdef OMNI_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

#ifdef OMNI_HAVE_ONEDNN
namespace {
using dnnl::memory;

// The matmul of M rows of x [M, K] by Wᵀ [K, N] (+ bias [1, N]) with the weights in the layout
// oneDNN picks.
dnnl::matmul::primitive_desc matmul_for(int64_t M, int64_t K, int64_t N, bool bias) {
  const auto dt = memory::data_type::bf16;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // callers on several threads stay safe
  const memory::desc x_md({M, K}, dt, memory::format_tag::ab), w_any({K, N}, dt, memory::format_tag::any),
      y_md({M, N}, dt, memory::format_tag::ab);
  return bias ? onednn::matmul_pd(x_md, w_any, memory::desc({1, N}, dt, memory::format_tag::ab), y_md, attr)
              : onednn::matmul_pd(x_md, w_any, y_md, attr);
}

// W [N, K] (the transpose of a contiguous [K, N]) into `packed` in `layout` by onednn_pack.h,
// false where it does not know the layout.
bool pack_own(const at::Tensor& W, const memory::desc& layout, void* packed) {
  return !W.is_contiguous() &&
         onednn::pack_bf16_kpairs(static_cast<const uint16_t*>(W.data_ptr()), W.size(1), W.size(0), layout, packed);
}

// W [N, K] (contiguous, or the transpose of a contiguous [K, N]) into `packed` in `layout` by
// oneDNN's reorder.
void pack_reorder(const at::Tensor& W, const memory::desc& layout, void* packed) {
  const int64_t K = W.size(1), N = W.size(0);
  const bool transposed = !W.is_contiguous();  // [N, K] over [K, N] storage
  const auto& eng = onednn::cpu_engine();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const memory::desc plain({K, N}, memory::data_type::bf16, transposed ? memory::format_tag::ab : memory::format_tag::ba);
  const dnnl::reorder::primitive_desc pd(eng, plain, eng, layout, attr);
  auto scratch = at::empty({static_cast<int64_t>(pd.scratchpad_desc().get_size() + 64)}, at::TensorOptions().dtype(at::kByte));
  dnnl::stream stream(eng);
  memory from(plain, eng, W.data_ptr()), to(layout, eng, packed);
  dnnl::reorder(pd).execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to},
                                     {DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), eng, scratch.data_ptr())}});
  stream.wait();
}

bool packable_bf16(const at::Tensor& W) {
  return W.scalar_type() == at::kBFloat16 && W.device().is_cpu() && W.dim() == 2 && W.numel() > 0 &&
         (W.is_contiguous() || W.t().is_contiguous()) && cpu_has_bf16_gemm();
}
}  // namespace
#endif

at::Tensor bf16_linear_packed(const at::Tensor& x, const at::Tensor& W, const at::Tensor& bias) {
#ifdef OMNI_HAVE_ONEDNN
  const auto bf16 = at::kBFloat16;
  if (x.scalar_type() != bf16 || !packable_bf16(W) || !x.device().is_cpu() || c10::GradMode::is_enabled() ||
      x.dim() < 2 || x.size(-1) != W.size(1) ||
      (bias.defined() && (bias.scalar_type() != bf16 || bias.dim() != 1 || bias.size(0) != W.size(0) ||
                          !bias.is_contiguous())))
    return {};
  const int64_t K = W.size(1), N = W.size(0), M = x.numel() / std::max<int64_t>(1, K);
  const bool transposed = !W.is_contiguous();  // [N, K] over [K, N] storage
  if (M < (transposed ? kMinRowsOwnPacker : kMinRows)) return {};
  try {
    const auto& eng = onednn::cpu_engine();
    const auto pd = matmul_for(M, K, N, bias.defined());
    const auto byte = at::TensorOptions().dtype(at::kByte);
    auto packed = at::empty({static_cast<int64_t>(pd.weights_desc().get_size())}, byte);
    if (!pack_own(W, pd.weights_desc(), packed.data_ptr())) {
      if (M < (transposed ? kMinRowsTransposed : kMinRows)) return {};
      pack_reorder(W, pd.weights_desc(), packed.data_ptr());
    }
    auto scratch = at::empty({static_cast<int64_t>(pd.scratchpad_desc().get_size() + 64)}, byte);
    const at::Tensor xc = x.reshape({M, K}).contiguous();
    auto y = at::empty({M, N}, x.options());
    dnnl::stream stream(eng);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(pd.src_desc(), eng, xc.data_ptr())},
                                         {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), eng, packed.data_ptr())},
                                         {DNNL_ARG_DST, memory(pd.dst_desc(), eng, y.data_ptr())},
                                         {DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), eng, scratch.data_ptr())}};
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, memory(pd.bias_desc(), eng, bias.data_ptr()));
    dnnl::matmul(pd).execute(stream, args);
    stream.wait();
    auto sizes = x.sizes().vec();
    sizes.back() = N;
    return y.view(sizes);
  } catch (const dnnl::error&) {
    return {};
  }
#else
  (void)x, (void)W, (void)bias;
  return {};
#endif
}

at::Tensor bf16_packed_weight_bytes(const at::Tensor& W, int64_t rows, bool own) {
#ifdef OMNI_HAVE_ONEDNN
  if (!packable_bf16(W) || rows <= 0 || (own && W.is_contiguous())) return {};
  try {
    const auto layout = matmul_for(rows, W.size(1), W.size(0), false).weights_desc();
    auto packed = at::empty({static_cast<int64_t>(layout.get_size())}, at::TensorOptions().dtype(at::kByte));
    if (own) {
      if (!pack_own(W, layout, packed.data_ptr())) return {};
    } else {
      pack_reorder(W, layout, packed.data_ptr());
    }
    return packed;
  } catch (const dnnl::error&) {
    return {};
  }
#else
  (void)W, (void)rows, (void)own;
  return {};
#endif
}

}  // namespace omni::nn::detail
