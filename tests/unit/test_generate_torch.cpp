// The shared generation parts (src/omni/generate/, nn/attention, nn/kv_cache) and the model
// contract's one capability check (run_mode), independent of any family.
#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <set>

#include "omni/core/error.h"
#include "omni/generate/flow.h"
#include "omni/generate/interleaved.h"
#include "omni/generate/output_paths.h"
#include "omni/generate/random.h"
#include "omni/generate/sampler.h"
#include "omni/generate/streamer.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/io/trace_torch.h"
#include "omni/models/model.h"
#include "omni/nn/attention.h"
#include "omni/nn/attention_rows.h"
#include "omni/nn/attention_tiles.h"
#include "omni/nn/attention_tiles_onednn.h"
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/linear_onednn.h"
#include "omni/nn/elementwise_cpu.h"
#include "omni/nn/kv_cache.h"
#include "omni/nn/linear.h"
#include "omni/nn/layer_norm.h"
#include "omni/nn/linear_bf16.h"
#include "omni/nn/llama.h"
#include "omni/nn/rope.h"
#include "omni/nn/siglip_navit.h"
#include "omni/nn/softmax_cpu.h"
#include "omni/nn/uninitialised.h"
#include "omni/nn/vit.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using namespace omni;

namespace {
double max_abs(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// softmax(q k^T * scale + mask) v with the kv heads repeated: the definition, densely.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& mask) {
  const int64_t G = q.size(1) / k.size(1);
  auto kk = k.repeat_interleave(G, 1), vv = v.repeat_interleave(G, 1);
  auto s = torch::matmul(q, kk.transpose(2, 3)) / std::sqrt(static_cast<double>(q.size(3)));
  if (mask.defined()) s = s + mask;
  return torch::matmul(torch::softmax(s, -1), vv);
}
}  // namespace

TEST(Attention, GroupedHeadsCausalWithPastAndMasksMatchTheDefinition) {
  torch::manual_seed(3);
  const int64_t B = 2, H = 6, kvH = 2, Tq = 5, S = 9, D = 8;
  auto q = torch::randn({B, H, Tq, D}), k = torch::randn({B, kvH, S, D}), v = torch::randn({B, kvH, S, D});
  // bottom-right causal: query i sees keys [0, S - Tq + i]
  auto qi = torch::arange(S - Tq, S).unsqueeze(1), kj = torch::arange(S).unsqueeze(0);
  auto causal = torch::zeros({Tq, S}).masked_fill(kj > qi, -std::numeric_limits<float>::infinity());
  nn::AttentionOptions o;
  o.causal = true;
  auto got = nn::attention(q, k, v, o);
  EXPECT_LT(max_abs(got, reference_attention(q, k, v, causal)), 1e-5);
  o.max_score_bytes = 1;  // one query row per chunk
  EXPECT_LT(max_abs(nn::attention(q, k, v, o), got), 1e-6);
  // additive masks of every accepted rank, per batch
  auto m3 = torch::randn({B, Tq, S});
  nn::AttentionOptions om;
  om.mask = m3;
  EXPECT_LT(max_abs(nn::attention(q, k, v, om), reference_attention(q, k, v, m3.unsqueeze(1))), 1e-5);
  om.mask = m3[0];
  EXPECT_LT(max_abs(nn::attention(q, k, v, om), reference_attention(q, k, v, m3[0])), 1e-5);
  om.mask = torch::randn({Tq, S + 1});
  EXPECT_THROW(nn::attention(q, k, v, om), Error);
  EXPECT_THROW(nn::attention(q, torch::randn({B, 4, S, D}), torch::randn({B, 4, S, D})), Error);  // 6 % 4
  // autograd flows through it (training uses the same core)
  auto qg = q.clone().requires_grad_(true);
  nn::attention(qg, k, v, o).sum().backward();
  EXPECT_GT(qg.grad().abs().sum().item<double>(), 0);
}

// A long causal prefill runs in row blocks that read only the keys up to their last row (causal
// flag or a causal additive mask). The skipped keys add exactly zero, so the result is the
// definition's; a row that sees no key at all keeps HF's uniform softmax over every key, and a
// mask whose blocked value is not the dtype's lowest skips nothing.
TEST(Attention, CausalPrefillBlocksSkipUnseenKeysAndMatchTheDefinition) {
  torch::manual_seed(5);
  const int64_t B = 1, H = 4, kvH = 2, Tq = 300, past = 7, S = Tq + past, D = 16;
  auto q = torch::randn({B, H, Tq, D}), k = torch::randn({B, kvH, S, D}), v = torch::randn({B, kvH, S, D});
  auto qi = torch::arange(past, S).unsqueeze(1), kj = torch::arange(S).unsqueeze(0);
  const float lowest = std::numeric_limits<float>::lowest();
  auto causal = torch::zeros({Tq, S}).masked_fill(kj > qi, lowest);
  const auto want = reference_attention(q, k, v, causal);
  nn::AttentionOptions o;
  o.causal = true;
  EXPECT_LT(max_abs(nn::attention(q, k, v, o), want), 1e-5);
  nn::AttentionOptions om;
  om.mask = causal;
  EXPECT_LT(max_abs(nn::attention(q, k, v, om), want), 1e-5);
  om.mask = causal.masked_fill(causal == lowest, -std::numeric_limits<float>::infinity());
  EXPECT_LT(max_abs(nn::attention(q, k, v, om), want), 1e-5);
  // the first past + 3 keys blocked for every row (left padding): rows 0..2 see no key at all and
  // get the uniform softmax over all S keys (the mean of v), as HF computes
  auto padded = causal.clone();
  padded.narrow(1, 0, past + 3).fill_(lowest);  // rows 0..2 see nothing now
  const auto want_padded = reference_attention(q, k, v, padded);
  om.mask = padded;
  const auto got_padded = nn::attention(q, k, v, om);
  EXPECT_LT(max_abs(got_padded, want_padded), 1e-5);
  EXPECT_LT(max_abs(got_padded.narrow(2, 0, 1), v.mean(2, true).repeat_interleave(H / kvH, 1)), 1e-5);
  // bf16: the mask's lowest is bf16's
  auto qb = q.to(torch::kBFloat16), kb = k.to(torch::kBFloat16), vb = v.to(torch::kBFloat16);
  om.mask = torch::zeros({Tq, S}, torch::kBFloat16).masked_fill(kj > qi, std::numeric_limits<c10::BFloat16>::lowest());
  const auto want_b = reference_attention(qb.to(torch::kFloat32), kb.to(torch::kFloat32), vb.to(torch::kFloat32), causal);
  EXPECT_LT(max_abs(nn::attention(qb, kb, vb, om).to(torch::kFloat32), want_b), 2e-2);
  // a mask that only lowers the future keys' scores: nothing may be skipped
  om.mask = torch::zeros({Tq, S}).masked_fill(kj > qi, -3.0f);
  EXPECT_LT(max_abs(nn::attention(q, k, v, om), reference_attention(q, k, v, om.mask)), 1e-5);
}

// bf16 on the CPU: one bf16 softmax pass (fp32 inside, one rounding) over scores of the prescaled
// q, in blocks of at most 32 MiB of scores. Its error against the exact attention is that of the
// fp32-softmax route it replaces (scores * scale, fp32 softmax, rounded probabilities), for a
// full, a causal and a masked case; the blocks change no row beyond rounding.
TEST(Attention, Bf16SoftmaxInOnePassIsAsCloseAsTheFp32Route) {
  torch::manual_seed(17);
  const int64_t B = 1, H = 4, kvH = 2, Tq = 300, S = 300, D = 72;
  auto qb = (torch::randn({B, H, Tq, D}) * 2).to(torch::kBFloat16), kb = torch::randn({B, kvH, S, D}).to(torch::kBFloat16);
  auto vb = torch::randn({B, kvH, S, D}).to(torch::kBFloat16);
  auto f64 = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto qi = torch::arange(Tq).unsqueeze(1), kj = torch::arange(S).unsqueeze(0);
  const auto causal = torch::zeros({Tq, S}).masked_fill(kj > qi, -std::numeric_limits<float>::infinity());
  auto masked = torch::randn({Tq, S});
  masked.narrow(1, 10, 20).fill_(std::numeric_limits<float>::lowest());
  for (int which = 0; which < 3; ++which) {
    nn::AttentionOptions o;
    torch::Tensor m;  // fp32 mask of the definition
    if (which == 1) {
      o.causal = true;
      m = causal;
    } else if (which == 2) {
      m = masked;
      o.mask = masked.to(torch::kBFloat16);
    }
    const auto mref = which == 2 ? o.mask.to(torch::kFloat32) : m;
    const auto exact = reference_attention(f64(qb), f64(kb), f64(vb), mref.defined() ? f64(mref) : torch::Tensor());
    // the route before: bf16 scores * scale, fp32 softmax, probabilities rounded to bf16
    auto kk = kb.repeat_interleave(H / kvH, 1), vv = vb.repeat_interleave(H / kvH, 1);
    auto s = torch::matmul(qb, kk.transpose(2, 3)).mul_(scale);
    if (mref.defined()) s = s + mref.to(torch::kBFloat16);
    const auto before = torch::matmul(torch::softmax(s, -1, torch::kFloat32).to(torch::kBFloat16), vv);
    const auto got = nn::attention(qb, kb, vb, o);
    ASSERT_EQ(got.scalar_type(), torch::kBFloat16);
    const double err_before = max_abs(f64(before), exact), err = max_abs(f64(got), exact);
    EXPECT_LT(err, exact.abs().max().item<double>() / 32) << which;  // a few bf16 steps of the output
    EXPECT_LT(err, 1.5 * err_before + 4e-3) << which << ": " << err << " against " << err_before;
    o.max_score_bytes = 50 * H * S * 2;  // blocks of 50 rows
    EXPECT_LT(max_abs(f64(nn::attention(qb, kb, vb, o)), f64(got)), 8e-3) << which;
  }
}

// In inference mode on the CPU, many query rows run in tiles of rows, one tile per thread
// (nn/attention_tiles.h). Each case equals the batched route that autograd takes (full, grouped
// heads, causal over a cache, causal and per-batch additive masks with rows that see no key, more
// keys than rows), in fp32 to rounding and in bf16 to a bf16 step, on two threads (the worker
// threads must see the inference mode). A NoGradGuard forward (a training run's) stays on the
// batched route bit for bit, as its recomputation under autograd.
TEST(Attention, TilesWithoutAutogradEqualTheBatchedRoute) {
  torch::manual_seed(23);
  const int saved_threads = at::get_num_threads();
  at::set_num_threads(2);
  const int64_t B = 2, H = 6, kvH = 2, D = 16;
  const float lowest = std::numeric_limits<float>::lowest();
  struct Case {
    int64_t Tq, S;
    int kind;  // 0 full, 1 causal flag, 2 causal mask with padded rows, 3 random per-batch mask,
               // 4 full on [B, T, H, D] storage (NaViT's heads: rows H·D apart)
  };
  for (const Case c : {Case{300, 300, 0}, Case{300, 307, 1}, Case{300, 307, 2}, Case{130, 700, 3}, Case{70, 70, 1},
                       Case{600, 600, 4}}) {
    auto heads = [&](int64_t h, int64_t T) {
      return c.kind == 4 ? torch::randn({B, T, h, D}).transpose(1, 2) : torch::randn({B, h, T, D});
    };
    auto q = heads(H, c.Tq), k = heads(kvH, c.S), v = heads(kvH, c.S);
    nn::AttentionOptions o;
    o.causal = c.kind == 1;
    const int64_t past = c.S - c.Tq;
    auto qi = torch::arange(past, c.S).unsqueeze(1), kj = torch::arange(c.S).unsqueeze(0);
    if (c.kind == 2) {
      o.mask = torch::zeros({c.Tq, c.S}).masked_fill(kj > qi, lowest);
      o.mask.narrow(1, 0, past + 3).fill_(lowest);  // rows 0..2 see nothing: HF's uniform softmax
    } else if (c.kind == 3) {
      o.mask = torch::randn({B, 1, c.Tq, c.S});
      o.mask.narrow(3, 0, 5).fill_(-std::numeric_limits<float>::infinity());
    }
    const auto batched = nn::attention(q, k, v, o);  // GradMode on: the batched route
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    torch::Tensor tiles, no_grad;
    {
      c10::InferenceMode guard;
      tiles = nn::attention_tiles(q, k, v, scale, o.causal, o.mask.defined() ? o.mask.unsqueeze(0).view({-1, 1, c.Tq, c.S}) : torch::Tensor());
      ASSERT_TRUE(tiles.defined()) << c.kind;
      EXPECT_LT(max_abs(nn::attention(q, k, v, o), batched), 2e-6) << c.kind;
    }
    {
      torch::NoGradGuard guard;
      no_grad = nn::attention(q, k, v, o);
    }
    EXPECT_LT(max_abs(tiles, batched), 2e-6) << c.kind;
    EXPECT_TRUE(torch::equal(no_grad, batched)) << c.kind;
  }
  // bf16, 72-wide, grouped heads: the causal flag (blocks reading fewer keys: at::mm, from 512
  // rows) and full attention (K and V packed once per head where oneDNN is built in, from 64 rows)
  auto qb = torch::randn({1, 4, 600, 72}).to(torch::kBFloat16), kb = torch::randn({1, 2, 600, 72}).to(torch::kBFloat16);
  auto vb = torch::randn({1, 2, 600, 72}).to(torch::kBFloat16);
  const double scale_b = 1.0 / std::sqrt(72.0);
  nn::AttentionOptions oc;
  oc.causal = true;
  const auto causal_b = nn::attention(qb, kb, vb, oc).to(torch::kFloat32);
  const auto q100 = qb.narrow(2, 0, 100), full_b = nn::attention(q100, kb, vb).to(torch::kFloat32);
  c10::InferenceMode guard;
  EXPECT_FALSE(nn::attention_tiles(qb.narrow(2, 0, 500), kb.narrow(2, 0, 500), vb.narrow(2, 0, 500), 0.1, true, {})
                   .defined());
  EXPECT_FALSE(nn::attention_tiles(qb.narrow(2, 0, 63), kb, vb, 0.1, false, {}).defined());
  const auto tiles_b = nn::attention_tiles(qb, kb, vb, scale_b, true, {});
  if (!nn::cpu_has_bf16_gemm()) {  // no bf16 tiles: attention() runs the fp32 route on widened q, k, v
    EXPECT_FALSE(tiles_b.defined());
    const auto f32 = torch::kFloat32;
    EXPECT_TRUE(torch::equal(nn::attention(qb, kb, vb, oc),
                             nn::attention(qb.to(f32), kb.to(f32), vb.to(f32), oc).to(torch::kBFloat16)));
    EXPECT_LT(max_abs(nn::attention(q100, kb, vb).to(f32), full_b), 1.6e-2);
    at::set_num_threads(saved_threads);
    return;
  }
  ASSERT_TRUE(tiles_b.defined());
  EXPECT_EQ(tiles_b.scalar_type(), torch::kBFloat16);
  EXPECT_LT(max_abs(tiles_b.to(torch::kFloat32), causal_b), 1.6e-2);
  EXPECT_TRUE(torch::equal(nn::attention(qb, kb, vb, oc), tiles_b));
  const auto packed_b = nn::attention_tiles(q100, kb, vb, scale_b, false, {});
  EXPECT_EQ(packed_b.defined(), nn::detail::onednn_built());  // here the CPU has bf16 GEMM kernels
  if (packed_b.defined()) EXPECT_LT(max_abs(packed_b.to(torch::kFloat32), full_b), 1.6e-2);
  at::set_num_threads(saved_threads);
}

// The one-pass bf16 softmax (nn/softmax_cpu.h) is libtorch's bf16 softmax: fp32 arithmetic and
// one rounding. Against the exact softmax rounded to bf16 it differs in at most a few elements a
// thousand and never by more than one bf16 step; blocked keys (-inf, bf16's lowest) get 0, a row
// with every key at -inf or any NaN score is NaN (as torch), rows of any length (the 16-wide
// loop's masked tails). Both roundings, vcvtneps2bf16 (where the CPU has AVX512-BF16) and the
// integer one of CPUs without it, and they agree bit for bit.
TEST(SoftmaxCpu, Bf16InOnePassEqualsTheExactSoftmaxRoundedOnce) {
  using Route = bool (*)(at::Tensor&, float);
  for (Route route : {Route{&nn::softmax_lastdim_}, Route{&nn::detail::softmax_lastdim_without_bf16_cvt_}}) {
    torch::manual_seed(23);
    for (int64_t S : {1, 7, 16, 33, 100, 1369}) {
      auto x = (torch::randn({3, 5, S}) * 4).to(torch::kBFloat16);
      if (S > 10) {
        x.select(2, 2).fill_(-std::numeric_limits<float>::infinity());
        x.select(2, 5).fill_(std::numeric_limits<c10::BFloat16>::lowest());
      }
      auto y = x.clone();
      if (!route(y, 1.f)) GTEST_SKIP() << "no AVX-512 F/BW/VL on this CPU: libtorch's softmax runs instead";
      const auto exact = torch::softmax(x.to(torch::kFloat64), -1).to(torch::kBFloat16);
      const auto ulps = (y.view(torch::kInt16).to(torch::kInt32) - exact.view(torch::kInt16).to(torch::kInt32)).abs();
      EXPECT_LE(ulps.max().item<int>(), 1) << S;
      EXPECT_LE(ulps.gt(0).sum().item<int64_t>(), std::max<int64_t>(1, x.numel() / 200)) << S;
      if (S > 10) {
        EXPECT_EQ(y.select(2, 2).abs().max().item<float>(), 0.f);
        EXPECT_EQ(y.select(2, 5).abs().max().item<float>(), 0.f);
      }
      EXPECT_LT((y.to(torch::kFloat64).sum(-1) - 1).abs().max().item<double>(), S * 4e-3) << S;
      auto other = x.clone();
      ASSERT_TRUE(nn::detail::softmax_lastdim_without_bf16_cvt_(other, 1.f));
      EXPECT_TRUE(torch::equal(y, other)) << S;
    }
    auto blocked = torch::full({4, 40}, -std::numeric_limits<float>::infinity()).to(torch::kBFloat16);
    blocked[1].fill_(0);
    blocked[2].fill_(0);
    blocked[2][3] = std::numeric_limits<float>::quiet_NaN();  // in the 16-wide loop
    blocked[3].fill_(0);
    blocked[3][38] = std::numeric_limits<float>::quiet_NaN();  // in the tail
    ASSERT_TRUE(route(blocked, 1.f));
    EXPECT_TRUE(blocked[0].isnan().all().item<bool>());
    EXPECT_NEAR(blocked[1][0].item<float>(), 1.0 / 40, 1e-4);
    EXPECT_TRUE(blocked[2].isnan().all().item<bool>());
    EXPECT_TRUE(blocked[3].isnan().all().item<bool>());
  }
  auto torch_nan = torch::softmax(torch::zeros({40}).index_put_({3}, NAN), -1);
  EXPECT_TRUE(torch_nan.isnan().all().item<bool>());  // what torch does with a NaN score
  auto f64 = torch::randn({4, 8}, torch::kFloat64);
  EXPECT_FALSE(nn::softmax_lastdim_(f64));
  auto strided = torch::randn({8, 4}).to(torch::kBFloat16).t();
  EXPECT_FALSE(nn::softmax_lastdim_(strided));
}

// The same kernel on fp32 scores with the attention's scale folded in: softmax(scale * x) to
// fp32's rounding (a few ulps of the largest probability: the exp polynomial and the sum's
// order), any row length; the same NaN rules, and +inf (a row torch makes NaN) too.
TEST(SoftmaxCpu, Fp32WithTheScaleFoldedInIsTorchsSoftmax) {
  torch::manual_seed(24);
  for (int64_t S : {1, 5, 16, 47, 1369}) {
    auto x = torch::randn({6, S}) * 5;
    if (S > 10) x.select(1, 3).fill_(-std::numeric_limits<float>::infinity());
    auto y = x.clone();
    if (!nn::softmax_lastdim_(y, 0.117f)) GTEST_SKIP() << "no AVX-512 F/BW/VL on this CPU: libtorch's softmax runs instead";
    const auto exact = torch::softmax(x.to(torch::kFloat64) * 0.117, -1);
    EXPECT_LT((y.to(torch::kFloat64) - exact).abs().max().item<double>(), 4e-7) << S;
    EXPECT_LT(((y.to(torch::kFloat64) - exact).abs() / exact.clamp_min(1e-30)).max().item<double>(), 2e-6) << S;
    if (S > 10) {
      EXPECT_EQ(y.select(1, 3).abs().max().item<float>(), 0.f);
    }
  }
  // A row with every score at fp32's lowest (HF's additive-mask fill, a row that sees no key): the
  // uniform softmax, as torch gives, at any scale (max * scale * log2 e would overflow to -inf).
  for (float sc : {1.f, 0.125f}) {
    auto unseen = torch::full({2, 37}, std::numeric_limits<float>::lowest());
    ASSERT_TRUE(nn::softmax_lastdim_(unseen, sc));
    EXPECT_LT((unseen - torch::softmax(torch::full({2, 37}, std::numeric_limits<float>::lowest()) * sc, -1)).abs().max().item<float>(),
              1e-8f);
    EXPECT_NEAR(unseen.min().item<float>(), 1.0 / 37, 1e-8);
  }
  auto odd = torch::zeros({3, 20});
  odd[0].fill_(-std::numeric_limits<float>::infinity());
  odd[1][17] = std::numeric_limits<float>::infinity();
  odd[2][4] = std::numeric_limits<float>::quiet_NaN();
  auto want = torch::softmax(odd, -1);
  ASSERT_TRUE(nn::softmax_lastdim_(odd, 0.5f));
  EXPECT_TRUE(odd.isnan().all().item<bool>());
  EXPECT_TRUE(want.isnan().all().item<bool>());  // torch: every row of this input is NaN
}

// The Llama / MoT MLP in bf16 on the CPU: SiLU computed in fp32 and rounded once (as the official
// bf16 runs on a GPU), then the bf16 product with up, then down: exactly these three steps.
TEST(LlamaMlp, Bf16SiluIsRoundedOnce) {
  torch::manual_seed(29);
  nn::LlamaConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  nn::LlamaMLP mlp(c);
  mlp->to(torch::kBFloat16);
  torch::NoGradGuard guard;  // the op chain (InferenceMode fuses SiLU·up: ElementwiseCpu below)
  const auto x = (torch::randn({3, 64}) * 2).to(torch::kBFloat16);
  const auto g = torch::linear(x, mlp->gate_proj->weight), u = torch::linear(x, mlp->up_proj->weight);
  const auto want = torch::linear(torch::silu(g.to(torch::kFloat32)).to(torch::kBFloat16) * u, mlp->down_proj->weight);
  EXPECT_TRUE(torch::equal(mlp->forward(x), want));
}

// The one-pass inference RoPE (nn/rope.h) against the op chain autograd and training still take,
// bit for bit, on the layouts the decoders hand it (Llama, BAGEL's MoT, U1's t/h/w parts).
TEST(Rope, OnePassInInferenceEqualsTheOpChainBitForBit) {
  torch::manual_seed(47);
  const int64_t B = 2, T = 3, H = 4, D = 40;  // half 20: one 16-lane step and a scalar tail
  const auto inv = nn::rope_inv_freq(D, 10000.0);
  for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
    // Llama: [B, T, H, D] rows viewed as [B, H, T, D]; positions 1-D ([1, T, D] cos) and per row
    const auto bthd = (torch::randn({B, T, H, D}) * 50).to(dt);
    const auto llama_x = bthd.transpose(1, 2);
    const auto pos2 = torch::tensor({{7, 8, 9}, {100, 2000, 30000}}, torch::kInt64);
    // MoT: [T, H, D] narrowed out of packed q|k|v rows, cos/sin [T, D]
    const auto packed = (torch::randn({T, 3 * H * D}) * 3).to(dt);
    const auto mot_x = packed.narrow(1, H * D, H * D).view({T, H, D});
    auto mot_cs = nn::rope_cos_sin(inv, torch::arange(T) + 5, dt);
    mot_cs = {mot_cs.cos.squeeze(0), mot_cs.sin.squeeze(0)};
    // SenseNova-U1: a part of each row's head dim with its own frequencies (half 18)
    auto part_cs = nn::rope_cos_sin(nn::rope_inv_freq(36, 10000.0), torch::arange(T) * 3, dt);
    part_cs = {part_cs.cos.squeeze(0), part_cs.sin.squeeze(0)};
    const std::vector<std::pair<torch::Tensor, nn::RopeCosSin>> cases = {
        {llama_x, nn::rope_cos_sin(inv, torch::arange(T) + 11, dt)},
        {llama_x, nn::rope_cos_sin(inv, pos2, dt)},
        {mot_x, mot_cs},
        {mot_x.narrow(-1, 2, 36), part_cs},
    };
    for (const auto& [x, cs] : cases) {
      torch::Tensor chain;
      {
        torch::NoGradGuard guard;
        EXPECT_FALSE(nn::apply_rope_rows(x, cs).defined()) << "outside InferenceMode";
        chain = nn::apply_rope(x, cs);
        // the chain is HF's definition: x * cos + cat(-x2, x1) * sin
        const auto c = cs.cos.unsqueeze(1), s = cs.sin.unsqueeze(1);
        const int64_t h = x.size(-1) / 2;
        EXPECT_TRUE(torch::equal(chain, x * c + torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1) * s));
      }
      c10::InferenceMode guard;
      const auto fused = nn::apply_rope_rows(x, cs);
      ASSERT_TRUE(fused.defined()) << x.sizes();
      EXPECT_EQ(fused.scalar_type(), dt);
      EXPECT_EQ(fused.sizes(), chain.sizes());
      EXPECT_TRUE(torch::equal(fused, chain)) << dt << " " << x.sizes() << " max diff "
                                              << (fused.to(torch::kFloat64) - chain.to(torch::kFloat64)).abs().max();
      EXPECT_TRUE(torch::equal(nn::apply_rope(x, cs), chain));
    }
  }
  // where it does not apply the chain runs: cos/sin of another dtype, a broadcast that grows x
  c10::InferenceMode guard;
  const auto x = torch::randn({1, H, T, D});
  const auto cs = nn::rope_cos_sin(inv, torch::arange(T), torch::kBFloat16);
  EXPECT_FALSE(nn::apply_rope_rows(x, cs).defined());
  EXPECT_EQ(nn::apply_rope(x, cs).scalar_type(), torch::kFloat32);
  const auto grow = nn::rope_cos_sin(inv, torch::tensor({{0, 1, 2}, {3, 4, 5}}, torch::kInt64));
  EXPECT_FALSE(nn::apply_rope_rows(x, grow).defined());
  EXPECT_EQ(nn::apply_rope(x, grow).sizes(), (std::vector<int64_t>{B, H, T, D}));
}

// The fused inference kernels for RMSNorm, SiLU(gate)·up and the tanh-GELU
// (nn/elementwise_cpu.h) against the op chains they replace, which autograd and a training run's
// no-grad forwards still take: fp32 to the row sum's order (RMSNorm) or bit for bit (SiLU·up,
// libtorch's own ops in place); bf16 within one bf16 step where the fp32 intermediate rounds the
// other way, in a handful of elements.
TEST(ElementwiseCpu, FusedRmsNormSiluMulAndGeluEqualTheOpChains) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "the fused kernels need AVX-512F; the op chains run";
  torch::manual_seed(31);
  // within one bf16 step of b (2^-7 relative, 2^-8 of the larger binade) and mostly equal
  auto one_step = [](const torch::Tensor& a, const torch::Tensor& b, double min_equal) {
    auto af = a.to(torch::kFloat32), bf = b.to(torch::kFloat32);
    auto d = (af - bf).abs();
    EXPECT_TRUE(d.le(bf.abs() * (1.0 / 128) + 1e-30).all().item<bool>()) << d.max().item<double>();
    EXPECT_GE(af.eq(bf).to(torch::kFloat64).mean().item<double>(), min_equal);
  };
  for (const int64_t C : {7, 16, 37, 300}) {
    for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
      nn::RMSNorm norm(C, 1e-6);
      norm->weight.data().uniform_(0.5, 1.5);
      norm->to(dt);
      const auto x = (torch::randn({3, 5, C}) * 3).to(dt);
      torch::Tensor chain, fused, direct;
      {
        torch::NoGradGuard guard;
        chain = norm->forward(x);
        EXPECT_FALSE(nn::rms_norm_rows(x, norm->weight, 1e-6, direct)) << "outside InferenceMode";
      }
      c10::InferenceMode guard;
      fused = norm->forward(x);
      ASSERT_TRUE(nn::rms_norm_rows(x, norm->weight, 1e-6, direct));
      EXPECT_TRUE(torch::equal(direct, fused));
      EXPECT_EQ(fused.sizes(), x.sizes());
      if (dt == torch::kFloat32) EXPECT_LT(max_abs(fused, chain), 2e-6 * chain.abs().max().item<double>()) << C;
      else one_step(fused, chain, 0.97);
      EXPECT_FALSE(nn::rms_norm_rows(x.transpose(0, 1), norm->weight, 1e-6, direct)) << "not contiguous";
    }
  }
  for (const int64_t n : {5, 16, 16387}) {
    for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
      const auto g = (torch::randn({n}) * 4).to(dt), u = torch::randn({n}).to(dt);
      torch::Tensor chain;
      {
        torch::NoGradGuard guard;
        chain = (dt == torch::kFloat32 ? torch::silu(g) : torch::silu(g.to(torch::kFloat32)).to(dt)) * u;
        auto gc = g.clone();
        EXPECT_FALSE(nn::silu_mul_(gc, u)) << "outside InferenceMode";
      }
      c10::InferenceMode guard;
      auto fused = g.clone();
      ASSERT_TRUE(nn::silu_mul_(fused, u));
      if (dt == torch::kFloat32) EXPECT_TRUE(torch::equal(fused, chain)) << n;
      else one_step(fused, chain, 0.999);
      auto wide = torch::randn({4, 2 * n}).to(dt);
      auto view = wide.narrow(1, 0, n);
      EXPECT_FALSE(nn::silu_mul_(view, u.expand({4, n}).contiguous())) << "not contiguous";
    }
  }
  // tanh-GELU in one pass. bf16: the exact (fp64) value rounded to bf16, but for a rare element one
  // step off, over [-12, 12]; the fp32 chain (in_fp32_on_cpu) is further from it where its
  // 1 + tanh(y) cancels (x below ~-2, values under ~0.05), up to tens of bf16 steps of those tiny
  // values. fp32: within 2e-6 of the exact value (relative) where |gelu| > 1e-6, where libtorch's
  // fp32 kernel errs by up to 7%; a few ulps from it where |gelu| > 0.05.
  for (const int64_t n : {5, 16, 16387}) {
    const auto x32 = torch::rand({n}) * 24 - 12;
    for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
      const auto x = x32.to(dt);
      torch::Tensor out;
      const auto xd = x.to(torch::kFloat64);
      const auto exact64 = xd / (1 + torch::exp(-2 * std::sqrt(2 / M_PI) * (xd + 0.044715 * xd.pow(3))));
      const auto exact = exact64.to(dt);
      const auto chain = torch::gelu(x.to(torch::kFloat32), "tanh").to(dt);
      EXPECT_FALSE(nn::gelu_tanh(x, out)) << "outside InferenceMode";
      c10::InferenceMode guard;
      ASSERT_TRUE(nn::gelu_tanh(x, out));
      EXPECT_EQ(out.scalar_type(), dt);
      EXPECT_TRUE(torch::equal(nn::hf_activation("gelu_pytorch_tanh", x), out));
      EXPECT_TRUE(torch::equal(nn::hf_activation("gelu_new", x), out));
      const auto big = exact.to(torch::kFloat32).abs().gt(0.05);
      if (dt == torch::kFloat32) {
        const auto seen = exact64.abs().gt(1e-6);
        const auto rel = [&](const torch::Tensor& t) {
          return ((t.to(torch::kFloat64) - exact64).abs() / exact64.abs().clamp_min(1e-300)).masked_select(seen).max().item<double>();
        };
        EXPECT_LT(rel(out), 2e-6) << n;
        if (n > 1000) EXPECT_LT(rel(out) * 100, rel(chain)) << n;  // x in (-6, -2) cancels in the chain
        EXPECT_LT(max_abs(out.masked_select(big), chain.masked_select(big)),
                  8 * 1.2e-7 * chain.abs().max().item<double>()) << n;
        continue;
      }
      const auto err = [&](const torch::Tensor& t) { return max_abs(t.to(torch::kFloat64), exact64); };
      EXPECT_LE(err(out), err(chain));
      one_step(out, exact, 0.98);  // fp32 denormals (|gelu| < 1e-38, x < ~-9) round twice
      const auto normal = exact.to(torch::kFloat32).abs().gt(1e-30);
      one_step(out.masked_select(normal), exact.masked_select(normal), 0.999);
      // where the value is not tiny the chain agrees too
      one_step(out.masked_select(big), chain.masked_select(big), 0.99);
    }
  }
}

// nn::layer_norm: a bf16 input on the CPU is normalised in fp32 and rounded once, so (nearly)
// every element is the exact result rounded to bf16, by the fp32 widening outside inference and
// by the fused row kernel (elementwise_cpu.h) in it; fp32 is ln->forward itself. C = 37 and 1152
// take the kernel's masked tail and its full vectors.
TEST(LayerNorm, Bf16IsTheExactNormRoundedOnceAndFp32IsTheModule) {
  torch::manual_seed(11);
  for (const int64_t C : {96, 37, 1152}) {
    torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({C}).eps(1e-6));
    {
      torch::NoGradGuard ng;
      ln->weight.normal_(1.0, 0.3);
      ln->bias.normal_(0.0, 0.3);
    }
    const auto x = torch::randn({7, 5, C}) * 3 + 1;
    EXPECT_TRUE(nn::layer_norm(ln, x).equal(ln->forward(x)));
    const auto xb = x.to(torch::kBFloat16);
    torch::nn::LayerNorm lb(torch::nn::LayerNormOptions({C}).eps(1e-6));
    lb->to(torch::kBFloat16);
    {
      torch::NoGradGuard ng;
      lb->weight.copy_(ln->weight);
      lb->bias.copy_(ln->bias);
    }
    const auto d = torch::kFloat64;
    const auto exact = torch::layer_norm(xb.to(d), {C}, lb->weight.to(d), lb->bias.to(d), 1e-6);
    const auto check = [&](const torch::Tensor& got, const char* route) {
      ASSERT_EQ(got.scalar_type(), torch::kBFloat16) << route;
      ASSERT_EQ(got.sizes(), xb.sizes()) << route;
      const double same = got.to(d).eq(exact.to(torch::kBFloat16).to(d)).to(d).mean().item<double>();
      EXPECT_GT(same, 0.99) << route << " C " << C;  // fp32 then bf16 differs from exact-then-bf16 only next to a tie
      // within one bf16 step (2^-8 relative) of the exact value everywhere
      EXPECT_TRUE(((got.to(d) - exact).abs() <= exact.abs() * (1.0 / 256) + 1e-30).all().item<bool>()) << route << C;
      // and libtorch's own bf16 kernel agrees to two bf16 steps of the largest value
      EXPECT_LT(max_abs(got.to(torch::kFloat32), lb->forward(xb).to(torch::kFloat32)), exact.abs().max().item<double>() / 128)
          << route;
    };
    torch::Tensor widened, direct;
    {
      torch::NoGradGuard ng;
      widened = nn::layer_norm(lb, xb);
      EXPECT_FALSE(nn::layer_norm_rows(xb, lb->weight, lb->bias, 1e-6, direct)) << "outside InferenceMode";
    }
    check(widened, "widened");
    if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl")) continue;  // no fused kernel
    c10::InferenceMode im;
    const auto fused = nn::layer_norm(lb, xb);
    ASSERT_TRUE(nn::layer_norm_rows(xb, lb->weight, lb->bias, 1e-6, direct));
    EXPECT_TRUE(torch::equal(direct, fused));
    check(fused, "fused");
    // the two routes differ only in the order of a row's sums
    EXPECT_GT(fused.eq(widened).to(d).mean().item<double>(), 0.99) << C;
    EXPECT_FALSE(nn::layer_norm_rows(xb.transpose(0, 1), lb->weight, lb->bias, 1e-6, direct)) << "not contiguous";
    EXPECT_FALSE(nn::layer_norm_rows(x, ln->weight, ln->bias, 1e-6, direct)) << "fp32 stays the module's";
    EXPECT_FALSE(nn::layer_norm_rows(xb, lb->weight, torch::Tensor(), 1e-6, direct)) << "no bias";
    // rows far from zero (mean 1000, spread 16): the variance about the mean
    const auto offset = (torch::randn({4, C}) * 16 + 1000).to(torch::kBFloat16);
    const auto got = nn::layer_norm(lb, offset);
    const auto want = torch::layer_norm(offset.to(d), {C}, lb->weight.to(d), lb->bias.to(d), 1e-6);
    EXPECT_TRUE(((got.to(d) - want).abs() <= want.abs() * (1.0 / 256) + 1e-3).all().item<bool>()) << C;
  }
}

// Decode-step attention (nn::attention without autograd: attention_rows) over views of a longer
// cache buffer, as the KV cache hands them out, equals the definition: grouped heads, 1 and 3
// query rows (3 and 9 rows a kv head: pairs and a single row), causal or an additive mask, fp32
// and bf16, D = 20 (not a multiple of the 16 lanes: the generic loop) and D = 32 / 128 (AVX-512's
// register-blocked loop where the CPU has it); S = 37 leaves a tail after the 16-lane softmax.
TEST(Attention, FewRowsOverACacheViewMatchTheDefinitionInFp32AndBf16) {
  torch::manual_seed(11);
  const int64_t B = 2, H = 6, kvH = 2, S = 37, cap = 50;
  for (int64_t D : {20, 32, 128})
    for (auto dt : {torch::kFloat32, torch::kBFloat16})
      for (int64_t Tq : {1, 3}) {
        auto kbuf = torch::randn({B, kvH, cap, D}).to(dt), vbuf = torch::randn({B, kvH, cap, D}).to(dt);
        auto k = kbuf.narrow(2, 0, S), v = vbuf.narrow(2, 0, S);
        ASSERT_FALSE(k.is_contiguous());
        auto q = torch::randn({B, H, Tq, D}).to(dt);
        auto qi = torch::arange(S - Tq, S).unsqueeze(1), kj = torch::arange(S).unsqueeze(0);
        auto causal = torch::zeros({Tq, S}).masked_fill(kj > qi, -std::numeric_limits<float>::infinity());
        auto m = torch::randn({B, 1, Tq, S});
        m.narrow(3, 5, 3).fill_(-std::numeric_limits<float>::infinity());  // blocked keys
        auto f = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
        const double tol = dt == torch::kFloat32 ? 1e-5 : 3e-2;
        torch::NoGradGuard no_grad;
        nn::AttentionOptions o;
        o.causal = true;
        auto got = nn::attention(q, k, v, o);
        ASSERT_EQ(got.scalar_type(), dt);
        EXPECT_LT(max_abs(f(got), reference_attention(f(q), f(k), f(v), causal)), tol) << Tq << " rows, D " << D;
        nn::AttentionOptions om;
        om.mask = m;
        EXPECT_LT(max_abs(f(nn::attention(q, k, v, om)), reference_attention(f(q), f(k), f(v), m)), tol)
            << Tq << " rows, D " << D;
        // the kernel itself takes exactly this case and declines what it does not do
        EXPECT_TRUE(nn::attention_rows(q, k, v, 0.5, false, {}).defined());
        EXPECT_FALSE(nn::attention_rows(torch::randn({B, H, 9, D}).to(dt), k, v, 0.5, false, {}).defined());
        EXPECT_FALSE(nn::attention_rows(q, k.transpose(2, 3), v, 0.5, false, {}).defined());
      }
}

// --dtype bf16 without bf16 GEMM kernels keeps the cache bf16 under fp32 compute (kv_cache.h):
// fp32 queries over bf16 keys and values, in the few-row kernel and the many-row routes alike,
// equal the fp32 attention over the same (rounded) keys and values and come out fp32.
TEST(Attention, Fp32QueriesOverABf16CacheEqualTheWidenedCache) {
  torch::manual_seed(12);
  const int64_t B = 2, H = 8, kvH = 2, S = 45, cap = 64, D = 16;
  auto kbuf = torch::randn({B, kvH, cap, D}).to(torch::kBFloat16), vbuf = torch::randn({B, kvH, cap, D}).to(torch::kBFloat16);
  auto k = kbuf.narrow(2, 0, S), v = vbuf.narrow(2, 0, S);
  auto kf = k.to(torch::kFloat32), vf = v.to(torch::kFloat32);
  c10::InferenceMode guard;
  for (int64_t Tq : {1, 2, 20}) {
    auto q = torch::randn({B, H, Tq, D});
    nn::AttentionOptions o;
    o.causal = true;
    auto got = nn::attention(q, k, v, o), want = nn::attention(q, kf, vf, o);
    ASSERT_EQ(got.scalar_type(), torch::kFloat32) << Tq;
    EXPECT_LT(max_abs(got, want), 1e-5) << Tq << " rows";
    EXPECT_LT(max_abs(got, reference_attention(q, kf, vf, torch::zeros({Tq, S}).masked_fill(
                                                             torch::arange(S).unsqueeze(0) > torch::arange(S - Tq, S).unsqueeze(1),
                                                             -std::numeric_limits<float>::infinity()))),
              1e-5)
        << Tq << " rows";
    // the kernel takes it for few rows; bf16 queries over an fp32 cache it declines
    EXPECT_EQ(nn::attention_rows(q, k, v, 0.25, true, {}).defined(), Tq <= 8) << Tq;
    if (Tq <= 8) EXPECT_FALSE(nn::attention_rows(q.to(torch::kBFloat16), kf, vf, 0.25, true, {}).defined());
  }
  // the cache: bf16 where the decoder's linears are bf16 over fp32 compute, else the compute dtype;
  // made bf16, it stays bf16 when reserved with fp32 options and rounds what is written
  EXPECT_EQ(nn::kv_cache_dtype(torch::kFloat32, torch::kBFloat16), torch::kBFloat16);
  EXPECT_EQ(nn::kv_cache_dtype(torch::kFloat32, torch::kChar), torch::kFloat32);
  EXPECT_EQ(nn::kv_cache_dtype(torch::kFloat32, torch::kFloat32), torch::kFloat32);
  EXPECT_EQ(nn::kv_cache_dtype(torch::kBFloat16, torch::kBFloat16), torch::kBFloat16);
  auto c = nn::KVCache::allocate(1, 1, 1, 2, 4, torch::TensorOptions().dtype(torch::kBFloat16));
  const auto x = torch::randn({1, 1, 3, 4});
  c.reserve(3, torch::TensorOptions().dtype(torch::kFloat32));  // grows past 2
  c.write(0, x, -x);
  c.length = 3;
  EXPECT_EQ(c.keys(0).scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(c.keys(0), x.to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(c.values(0), (-x).to(torch::kBFloat16)));
}

// bf16 inference linears from 1024 rows run through oneDNN with the weight packed for the call
// (linear_onednn.h, where oneDNN is built in); from 512 rows otherwise on rows zero-padded to a
// multiple of 16 (oneDNN's slow row counts, linear.cpp): the result is the first M rows of the
// padded product. Either way of x's leading shape and equal to the module's forward within
// rounding; with autograd neither applies.
TEST(LinearRows, Bf16PackedOrPaddedRowsEqualTheModule) {
  torch::manual_seed(9);
  torch::nn::Linear l(torch::nn::LinearOptions(96, 40).bias(true));
  l->to(torch::kBFloat16);
  const auto x = torch::randn({1, 1369, 96}).to(torch::kBFloat16);
  const auto f = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };
  c10::InferenceMode guard;
  // 1369 rows: packed (computed on 1369 rows) or padded (1376); 577: padded to 592; a multiple of
  // 16, or fewer than 512 rows: torch's linear as it is. On a CPU without bf16 GEMM kernels all are
  // widened to fp32 on the rows given (cpu_bf16.h).
  const bool native = nn::cpu_has_bf16_gemm(), packs = native && nn::detail::onednn_built();
  for (const auto& [rows, computed] : std::vector<std::pair<int64_t, int64_t>>{
           {1369, packs || !native ? 1369 : 1376}, {577, native ? 592 : 577}, {560, 560}, {500, 500}}) {
    const auto xr = x.narrow(1, 0, rows);
    const auto got = nn::linear_rows(l, xr), want = l->forward(xr);
    ASSERT_EQ(got.sizes(), want.sizes()) << rows;
    EXPECT_TRUE(got.is_contiguous()) << rows;
    EXPECT_EQ(got.storage().nbytes(), static_cast<size_t>(computed) * 40 * 2) << rows;
    const double diff = (f(got) - f(want)).abs().max().item<double>(), top = f(want).abs().max().item<double>();
    EXPECT_LE(diff, top / 128) << rows << ": max diff " << diff << " of outputs up to " << top << ", equal "
                               << got.eq(want).to(torch::kFloat).mean().item<float>();
  }
  // without a bias, and a 3-d x of 2 x 600 rows (1200: packed where built in)
  torch::nn::Linear nb(torch::nn::LinearOptions(96, 40).bias(false));
  nb->to(torch::kBFloat16);
  const auto x2 = torch::randn({2, 600, 96}).to(torch::kBFloat16);
  const auto got2 = nn::linear_rows(nb, x2), want2 = nb->forward(x2);
  ASSERT_EQ(got2.sizes(), want2.sizes());
  EXPECT_LE((f(got2) - f(want2)).abs().max().item<double>(), f(want2).abs().max().item<double>() / 128);
  EXPECT_EQ(nn::detail::bf16_linear_packed(x2, nb->weight, {}).defined(), packs);
  EXPECT_FALSE(nn::detail::bf16_linear_packed(x2.narrow(1, 0, 500), nb->weight, {}).defined());  // 1000 rows
}

// onednn_pack.h lays a bf16 weight stored transposed out as oneDNN's matmul asks: the bytes equal
// oneDNN's own reorder of it, for shapes on and off the layout's 32 x 64 blocks (padding zeroed),
// and the packed GEMM over them equals torch's linear within bf16 rounding. Where oneDNN is not
// built in or the CPU has no bf16 GEMM kernels there is nothing to pack: both are undefined.
TEST(LinearRows, Bf16WeightsPackedByOmniEqualOneDnnsReorder) {
  torch::manual_seed(13);
  const bool packs = nn::detail::onednn_built() && nn::cpu_has_bf16_gemm();
  for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{
           {64, 32}, {1152, 96}, {40, 96}, {4304 / 8, 1152 / 8}, {17, 33}, {3, 5}, {100, 37}, {96, 131}}) {
    const auto W = torch::randn({out, in}).to(torch::kBFloat16).t().contiguous().t();  // [out, in] over [in, out]
    ASSERT_FALSE(W.is_contiguous());
    for (int64_t rows : {512, 1369}) {
      const auto ours = nn::detail::bf16_packed_weight_bytes(W, rows, true);
      const auto onednn = nn::detail::bf16_packed_weight_bytes(W, rows, false);
      ASSERT_EQ(ours.defined(), packs) << out << " x " << in;
      ASSERT_EQ(onednn.defined(), packs) << out << " x " << in;
      if (!packs) continue;
      ASSERT_EQ(ours.numel(), onednn.numel()) << out << " x " << in;
      EXPECT_TRUE(torch::equal(ours, onednn)) << out << " x " << in << ", " << rows << " rows: "
                                              << ours.ne(onednn).sum().item<int64_t>() << " bytes differ";
    }
    // the packer takes only the transposed storage; the loaded layout is oneDNN's to reorder
    EXPECT_FALSE(nn::detail::bf16_packed_weight_bytes(W.contiguous(), 512, true).defined());
    c10::InferenceMode guard;
    const auto x = torch::randn({600, in}).to(torch::kBFloat16);
    const auto got = nn::detail::bf16_linear_packed(x, W, {});
    ASSERT_EQ(got.defined(), packs);
    // from 384 rows with this packer (oneDNN's reorder pays from 512)
    EXPECT_EQ(nn::detail::bf16_linear_packed(x.narrow(0, 0, 384), W, {}).defined(), packs);
    EXPECT_FALSE(nn::detail::bf16_linear_packed(x.narrow(0, 0, 383), W, {}).defined());
    if (!packs) continue;
    const auto want = torch::nn::functional::linear(x, W.contiguous()).to(torch::kFloat64);
    EXPECT_LE((got.to(torch::kFloat64) - want).abs().max().item<double>(), want.abs().max().item<double>() / 128)
        << out << " x " << in;
  }
}

TEST(LinearRows, Bf16WithAutogradIsTheModuleOnTheRowsGiven) {
  torch::manual_seed(9);
  torch::nn::Linear l(torch::nn::LinearOptions(96, 40).bias(true));
  l->to(torch::kBFloat16);
  const auto xg = torch::randn({1, 1369, 96}).to(torch::kBFloat16).requires_grad_(true);
  const auto yg = nn::linear_rows(l, xg);
  EXPECT_EQ(yg.storage().nbytes(), 1369u * 40 * 2);
  yg.sum().backward();
  EXPECT_TRUE(xg.grad().defined());
}

// The few-row linear (decode steps, CFG pairs) equals the module's forward: for 1..4 fp32 rows its
// own loop (fp32 summation order aside; K not a multiple of the 8-wide loop), for 1..2 bf16 rows
// linear_bf16_rows (fp32 sums in another order, then one rounding to bf16: within a bf16 step),
// otherwise the module itself (libtorch's oneDNN bf16 GEMM), or on a CPU without bf16 GEMM kernels
// the fp32 product rounded once.
TEST(LinearRows, EqualsTheModuleForFp32AndBf16) {
  c10::InferenceMode guard;
  torch::manual_seed(3);
  for (bool bias : {true, false})
    for (auto dt : {torch::kFloat32, torch::kBFloat16}) {
      torch::nn::Linear l(torch::nn::LinearOptions(203, 37).bias(bias));
      l->to(dt);
      for (int64_t rows : {1, 2, 3, 4, 6}) {
        const auto x = torch::randn({rows, 1, 203}).to(dt);
        const auto got = omni::nn::linear_rows(l, x), want = l->forward(x);
        ASSERT_EQ(got.sizes(), want.sizes());
        ASSERT_EQ(got.scalar_type(), dt);
        const auto err = (got - want).abs().max().item<double>(), scale = want.abs().max().item<double>();
        if (dt == torch::kFloat32 && rows <= 4)
          EXPECT_LT(err, 1e-6 * scale) << rows << " rows, bias " << bias;
        else if (dt == torch::kBFloat16 && rows <= 2) {
          EXPECT_LT(err, 8e-3 * scale) << rows << " rows, bias " << bias;
          EXPECT_TRUE(omni::nn::linear_bf16_rows(x, l->weight, l->bias).equal(got));
        } else if (dt == torch::kBFloat16 && !omni::nn::cpu_has_bf16_gemm()) {
          // widened to fp32 (cpu_bf16.h): the fp32 product, rounded once
          const auto f = torch::kFloat32;
          const auto exact = torch::nn::functional::linear(x.to(f), l->weight.to(f), bias ? l->bias.to(f) : torch::Tensor());
          EXPECT_LE((got.to(f) - exact).abs().max().item<double>(), exact.abs().max().item<double>() / 256) << rows;
        } else
          EXPECT_EQ(err, 0.0) << rows << " rows, bias " << bias;
      }
    }
}

// fp32 inference GEMMs of 5..511 rows and a weight of 2^18+ elements run as one-thread GEMMs on
// blocks of output rows (linear_widened with nothing to widen): the module's product up to fp32
// summation order, the same on one thread as on two (OpenBLAS's own GEMM is not: at 512 rows its
// sums differ between one and two threads); 512 rows, a small weight or autograd take the
// module's own linear.
TEST(LinearRows, Fp32FewHundredRowsRunInBlocksOfOutputRows) {
  torch::manual_seed(12);
  torch::nn::Linear l(torch::nn::LinearOptions(512, 520).bias(true)), small(torch::nn::LinearOptions(96, 40));
  const int threads = at::get_num_threads();
  {
    c10::InferenceMode guard;
    for (int64_t rows : {5, 77, 511, 512}) {
      const auto x = torch::randn({1, rows, 512});
      at::set_num_threads(2);
      const auto got = omni::nn::linear_rows(l, x);
      at::set_num_threads(1);
      const auto one = omni::nn::linear_rows(l, x), want = l->forward(x);
      at::set_num_threads(threads);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT((got - want).abs().max().item<double>(), 1e-5 * want.abs().max().item<double>()) << rows;
      if (rows < 512) {
        EXPECT_TRUE(one.equal(got)) << rows;
        EXPECT_TRUE(omni::nn::linear_widened(x, l->weight, {}, l->bias).equal(got)) << rows;
      } else {
        EXPECT_TRUE(want.equal(one));  // the module's linear (whose sums OpenBLAS splits by thread count)
      }
      EXPECT_TRUE(omni::nn::linear_rows(small, x.narrow(2, 0, 96)).equal(small->forward(x.narrow(2, 0, 96))));
    }
  }
  const auto xg = torch::randn({77, 512}).requires_grad_(true);
  const auto yg = omni::nn::linear_rows(l, xg);
  yg.sum().backward();
  EXPECT_TRUE(xg.grad().defined());
  EXPECT_TRUE(yg.equal(l->forward(xg)));
}

// The bf16-weight row kernel (linear_bf16.h) for one and two rows of fp32 or bf16 activations,
// against the fp64 product of the same bf16 weights: K shorter than, equal to and longer than the
// 16 weights an AVX2 step loads (the rest in the scalar tail), O = 9 (two 4-row tiles and one row).
// Each row's sum does not depend on how many rows came with it: row 0 of a pair equals that row
// alone where one tile serves both counts (every CPU but AVX512-BF16's one-row loop).
TEST(LinearBf16Rows, OneOrTwoRowsEqualTheWidenedProduct) {
  c10::InferenceMode guard;
  torch::manual_seed(11);
  const auto f64 = torch::kFloat64;
  for (int64_t K : {8, 16, 40, 203, 2048}) {
    const auto w = torch::randn({9, K}).to(torch::kBFloat16), b = torch::randn({9});
    for (auto xt : {torch::kFloat32, torch::kBFloat16}) {
      const auto x = torch::randn({2, K}).to(xt);
      for (int64_t rows : {1, 2}) {
        const auto xr = x.narrow(0, 0, rows);
        const auto got = omni::nn::linear_bf16_rows(xr, w, b);
        ASSERT_TRUE(got.defined()) << K;
        ASSERT_EQ(got.scalar_type(), xt);
        const auto want = torch::linear(xr.to(f64), w.to(f64), b.to(f64));
        // fp32 sums of K products (bf16 activations: then one rounding to bf16)
        const double tol = (xt == torch::kFloat32 ? 1e-6 : 4e-3) * want.abs().max().item<double>();
        EXPECT_LT((got.to(f64) - want).abs().max().item<double>(), tol) << "K " << K << ", " << rows << " rows";
      }
      // each row of a pair is summed as one row alone is (vdpbf16ps too: one sum along k per row)
      EXPECT_TRUE(omni::nn::linear_bf16_rows(x, w, b)[0].equal(omni::nn::linear_bf16_rows(x.narrow(0, 0, 1), w, b)[0]))
          << "K " << K;
      EXPECT_TRUE(omni::nn::linear_bf16_rows(x, w, b)[1].equal(omni::nn::linear_bf16_rows(x.narrow(0, 1, 1), w, b)[0]))
          << "K " << K;
    }
  }
}

// 3..8 fp32 rows of a bf16 weight run as passes of two rows (Janus's CFG pairs of --parallel_size
// 2..4): every row's output is bit for bit what that row gives alone, the outputs keep x's
// leading shape, and 9 rows are not taken. Shared weights (q, k, v) get the same rows each.
TEST(LinearBf16Rows, ThreeToEightRowsArePassesOfRowPairs) {
  c10::InferenceMode guard;
  torch::manual_seed(13);
  const auto w = torch::randn({37, 203}).to(torch::kBFloat16), w2 = torch::randn({5, 203}).to(torch::kBFloat16);
  const auto b = torch::randn({37});
  for (int64_t rows = 3; rows <= omni::nn::kBf16PairedRowsMax; ++rows) {
    const auto x = torch::randn({rows, 1, 203});
    const auto ys = omni::nn::linear_bf16_rows_shared(x, {w, w2}, {b, {}});
    ASSERT_EQ(ys.size(), 2u);
    ASSERT_EQ(ys[0].sizes(), (std::vector<int64_t>{rows, 1, 37}));
    ASSERT_EQ(ys[1].sizes(), (std::vector<int64_t>{rows, 1, 5}));
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_TRUE(ys[0][r].equal(omni::nn::linear_bf16_rows(x[r], w, b))) << rows << " rows, row " << r;
      EXPECT_TRUE(ys[1][r].equal(omni::nn::linear_bf16_rows(x[r], w2, {}))) << rows << " rows, row " << r;
    }
    const auto want = torch::linear(x.to(torch::kFloat64), w.to(torch::kFloat64), b.to(torch::kFloat64));
    EXPECT_LT((ys[0].to(torch::kFloat64) - want).abs().max().item<double>(), 1e-5 * want.abs().max().item<double>());
  }
  EXPECT_FALSE(omni::nn::linear_bf16_rows(torch::randn({omni::nn::kBf16PairedRowsMax + 1, 203}), w, b).defined());
}

// --dtype int8: per-channel symmetric quantization, the int8 row loop against the dequantized
// weight (K = 203 leaves a tail after the 16- and 8-wide steps), and quantize_linears_int8 on a
// module tree: only the linears under the prefix change, and they still compute the layer.
// linear_rows_shared (a layer's q/k/v or gate/up in one pass) gives each linear exactly what
// linear_rows gives it: fp32, int8 (1..4 rows in one pass), bf16 weights with bf16 or fp32 rows
// (1..2), and every other case through linear_rows itself (more rows, mixed widths, grad mode).
TEST(LinearRows, SharedInputEqualsEachLinearBitForBit) {
  torch::manual_seed(5);
  auto make = [](int64_t in, int64_t out, bool bias) { return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias)); };
  for (const char* kind : {"fp32", "int8", "bf16", "bf16 weights, fp32 rows"}) {
    const std::string k = kind;
    // odd sizes: tiles and the scalar tail; 9 + 5 + 13 rows split unevenly across the threads
    std::vector<torch::nn::Linear> ls{make(203, 9, true), make(203, 5, false), make(203, 13, true)};
    for (auto& l : ls) {
      if (k == "int8") {
        auto [q, scale] = omni::nn::quantize_rows_int8(l->weight.detach());
        l->weight.requires_grad_(false);
        l->weight.set_data(q);
        l->register_buffer("weight_scale", scale);
      }
      if (k.rfind("bf16", 0) == 0) l->to(torch::kBFloat16);
    }
    const auto xt = k == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    for (int64_t rows : {1, 2, 3, 4, 5}) {
      c10::InferenceMode guard;
      const auto x = torch::randn({rows, 203}).to(xt);
      const auto got = omni::nn::linear_rows_shared(x, ls);
      ASSERT_EQ(got.size(), ls.size());
      for (size_t i = 0; i < ls.size(); ++i)
        EXPECT_TRUE(got[i].equal(omni::nn::linear_rows(ls[i], x))) << kind << ", " << rows << " rows, linear " << i;
    }
  }
  // weights of different dtypes, and autograd: linear_rows on each
  auto a = make(16, 4, true), b = make(16, 3, false);
  const auto x = torch::randn({1, 16});
  const auto y = omni::nn::linear_rows_shared(x, {a, b});
  ASSERT_TRUE(y[0].requires_grad());
  EXPECT_TRUE(y[0].equal(a->forward(x)) && y[1].equal(b->forward(x)));
  b->to(torch::kBFloat16);
  c10::InferenceMode guard;
  const auto z = omni::nn::linear_rows_shared(x, {a, b});
  EXPECT_TRUE(z[0].equal(omni::nn::linear_rows(a, x)) && z[1].equal(omni::nn::linear_rows(b, x)));
  EXPECT_EQ(z[1].scalar_type(), torch::kFloat32);
}

// An inference-only layout (omni infer / eval: the vision towers): every fp32 CPU Linear weight
// under the root keeps its values, shape and name but is stored transposed ([out, in] over [in,
// out] storage, for OpenBLAS's faster NN kernel); other dtypes are left alone. A SigLIP-style block
// computes the same within fp32 rounding through torch's linear and through linear_rows, whose
// few-row kernels decline the non-row-major weight (1..4 rows) and many-row GEMMs alike.
TEST(LinearRows, WeightsStoredTransposedComputeTheSame) {
  torch::manual_seed(6);
  omni::nn::ViTConfig c;
  c.image_size = 64, c.patch_size = 16, c.width = 96, c.depth = 2, c.heads = 4, c.mlp_hidden = 160;
  omni::nn::VisionTransformer vt(c);
  // bf16: re-laid where oneDNN's packed GEMMs run (onednn_pack.h lays out every shape from it)
  auto half = torch::nn::Linear(96, 64), half_odd = torch::nn::Linear(96, 40);
  half->to(torch::kBFloat16);
  half_odd->to(torch::kBFloat16);
  vt->register_module("bf16_probe", half);
  vt->register_module("bf16_probe_odd", half_odd);
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : vt->named_parameters()) before[p.key()] = p.value().detach().clone();
  const auto px = torch::rand({2, 3, 64, 64}) * 2 - 1;
  torch::Tensor ref;
  {
    c10::InferenceMode guard;
    ref = vt->forward(px);
  }
  // linear_onednn.h packs a bf16 weight from it (where the CPU has bf16 GEMM kernels)
  const bool bf16_too = omni::nn::detail::onednn_built() && omni::nn::cpu_has_bf16_gemm();
  EXPECT_EQ(omni::nn::store_linear_weights_transposed(*vt), 2 * 4 + (bf16_too ? 2 : 0));  // qkv, proj, fc1, fc2 per block
  for (const auto& p : vt->named_parameters()) {
    ASSERT_TRUE(before.count(p.key())) << p.key();
    EXPECT_TRUE(p.value().equal(before[p.key()])) << p.key();
    EXPECT_EQ(p.value().sizes(), before[p.key()].sizes()) << p.key();
  }
  const auto& w = vt->block_ptrs[0]->mlp->fc1->weight;
  EXPECT_FALSE(w.is_contiguous());
  EXPECT_TRUE(w.t().is_contiguous());
  EXPECT_EQ(half->weight.is_contiguous(), !bf16_too);  // without oneDNN's packing bf16 is left as loaded
  EXPECT_EQ(half_odd->weight.is_contiguous(), !bf16_too);
  c10::InferenceMode guard;
  EXPECT_LT((vt->forward(px) - ref).abs().max().item<float>(), 1e-5f);
  // the residual stream is row-major [B, N, C] from the patch embedding on (a transposed view
  // there kept every add and LayerNorm of the tower on [C, N] strides, 13-16x slower)
  EXPECT_TRUE(vt->patch_embed->forward(px).is_contiguous());
  EXPECT_TRUE(ref.is_contiguous());
  // bf16 from 512 rows: packed from the transposed storage (from 1024 rows with the loaded layout)
  const auto xb = torch::randn({600, 96}).to(torch::kBFloat16);
  const auto wb = before.at("bf16_probe.weight");
  const auto want_b = torch::nn::functional::linear(xb, wb, half->bias).to(torch::kFloat64);
  EXPECT_LE((omni::nn::linear_rows(half, xb).to(torch::kFloat64) - want_b).abs().max().item<double>(),
            want_b.abs().max().item<double>() / 128);
  EXPECT_EQ(omni::nn::detail::bf16_linear_packed(xb, half->weight, half->bias).defined(), bf16_too);
  EXPECT_FALSE(omni::nn::detail::bf16_linear_packed(xb, wb, half->bias).defined());
  auto& fc1 = vt->block_ptrs[0]->mlp->fc1;
  for (int64_t rows : {1, 3, 37}) {
    const auto x = torch::randn({rows, 96});
    const auto want = torch::addmm(fc1->bias, x, before.at("blocks.0.mlp.fc1.weight").t());
    EXPECT_LT((omni::nn::linear_rows(fc1, x) - want).abs().max().item<float>(), 1e-5f) << rows;
  }
  EXPECT_EQ(omni::nn::store_linear_weights_transposed(*vt), 0);  // already laid out
}

TEST(LinearInt8, QuantizesPerChannelAndTheRowLoopEqualsTheDequantizedGemm) {
  torch::manual_seed(4);
  auto w = torch::randn({37, 203});
  w[5].zero_();          // an all-zero row: scale 1, q 0
  w[7].mul_(1000);       // rows of very different ranges keep their own scales
  auto [q, scale] = omni::nn::quantize_rows_int8(w);
  ASSERT_EQ(q.scalar_type(), torch::kChar);
  EXPECT_EQ(q.abs().amax(1).eq(127).sum().item<int64_t>(), 36);  // each nonzero row reaches +-127
  EXPECT_EQ(scale[5].item<float>(), 1.0f);
  EXPECT_TRUE(q[5].eq(0).all().item<bool>());
  const auto deq = omni::nn::dequantize_rows_int8(q, scale, torch::kFloat32);
  // round to nearest: each weight within half a step of its row's grid
  EXPECT_TRUE(((deq - w).abs() <= scale.unsqueeze(1) * 0.5001).all().item<bool>());
  c10::InferenceMode guard;
  const auto bias = torch::randn({37});
  for (int64_t rows : {1, 2, 3, 4, 6}) {
    const auto x = torch::randn({rows, 1, 203});
    const auto want = torch::linear(x, deq, bias);
    const auto got = omni::nn::linear_rows(x, q, scale, bias);
    ASSERT_EQ(got.sizes(), want.sizes());
    const auto err = (got - want).abs().max().item<double>(), mag = want.abs().max().item<double>();
    EXPECT_LT(err, 1e-5 * mag) << rows << " rows";
    // against the float weight: the quantization error, well under 1% of the output
    const auto qerr = (got - torch::linear(x, w, bias)).norm().item<double>() / want.norm().item<double>();
    EXPECT_LT(qerr, 1e-2) << rows << " rows";
    EXPECT_GT(qerr, 0.0) << rows << " rows";
  }
}

TEST(LinearInt8, QuantizesOnlyTheLinearsUnderThePrefix) {
  struct Block : torch::nn::Module {
    torch::nn::Linear a{nullptr}, b{nullptr};
    Block() {
      a = register_module("a", torch::nn::Linear(16, 24));
      b = register_module("b", torch::nn::Linear(24, 8));
    }
  };
  struct Net : torch::nn::Module {
    std::shared_ptr<Block> layers, head;
    Net() {
      layers = register_module("layers", std::make_shared<Block>());
      head = register_module("head", std::make_shared<Block>());
    }
  };
  torch::manual_seed(5);
  Net net;
  const auto x = torch::randn({3, 16});
  torch::Tensor want, head_w = net.head->a->weight.clone();
  {
    c10::InferenceMode guard;
    want = omni::nn::linear_rows(net.layers->b, omni::nn::linear_rows(net.layers->a, x));
  }
  const auto rep = omni::nn::quantize_linears_int8(net, "layers.");
  EXPECT_EQ(rep.linears, 2);
  EXPECT_EQ(rep.bytes_before, (16 * 24 + 24 * 8) * 4);
  EXPECT_EQ(rep.bytes_after, 16 * 24 + 24 * 8 + (24 + 8) * 4);
  EXPECT_EQ(net.layers->a->weight.scalar_type(), torch::kChar);
  EXPECT_EQ(net.named_parameters()["layers.a.weight"].scalar_type(), torch::kChar);  // the registered entry too
  EXPECT_TRUE(omni::nn::int8_scale(*net.layers->a).defined());
  EXPECT_TRUE(torch::equal(net.head->a->weight, head_w));
  EXPECT_FALSE(omni::nn::int8_scale(*net.head->a).defined());
  c10::InferenceMode guard;
  const auto got = omni::nn::linear_rows(net.layers->b, omni::nn::linear_rows(net.layers->a, x));
  const double rel = ((got - want).norm() / want.norm()).item<double>();
  EXPECT_LT(rel, 2e-2);
  EXPECT_GT(rel, 0.0);
}

// --dtype int8 as the families load it: decoder linears built int8 (no float weight at any time),
// the checkpoint's float weights quantized into them by the strict loader, other tensors as usual.
TEST(LinearInt8, BuiltInt8AndFilledByTheStrictLoader) {
  struct Net : torch::nn::Module {
    torch::nn::Linear dec{nullptr}, head{nullptr};
    Net() {
      omni::nn::NarrowLinearBuild int8(torch::kChar);
      dec = register_module("dec", omni::nn::decoder_linear(40, 24, true));
      head = register_module("head", torch::nn::Linear(24, 8));  // not a decoder linear: stays float
    }
  };
  torch::manual_seed(6);
  const auto w = torch::randn({24, 40}), b = torch::randn({24}), hw = torch::randn({8, 24}), hb = torch::randn({8});
  const std::string path = (std::filesystem::temp_directory_path() / "omni_int8_load.safetensors").string();
  omni::io::save_safetensors(path, {{"dec.weight", w.to(torch::kBFloat16)}, {"dec.bias", b}, {"head.weight", hw}, {"head.bias", hb}});
  auto net = std::make_shared<Net>();
  EXPECT_EQ(net->dec->weight.scalar_type(), torch::kChar);  // int8 from construction on
  EXPECT_EQ(net->dec->weight.sizes(), (std::vector<int64_t>{24, 40}));
  EXPECT_EQ(omni::nn::decoder_linear(4, 3, false)->weight.scalar_type(), torch::kFloat32);  // scope ended
  auto ckpt = omni::io::Checkpoint::open(path);
  const auto rep = omni::io::load_module(*net, ckpt);
  EXPECT_EQ(rep.tensors, 4u);  // the scale is not a checkpoint tensor
  auto [q, s] = omni::nn::quantize_rows_int8(w.to(torch::kBFloat16));
  EXPECT_TRUE(torch::equal(net->dec->weight, q));
  EXPECT_TRUE(torch::equal(omni::nn::int8_scale(*net->dec), s));
  EXPECT_TRUE(torch::equal(net->dec->bias, b));
  EXPECT_TRUE(torch::equal(net->head->weight, hw));
  c10::InferenceMode guard;
  const auto x = torch::randn({2, 40});
  const auto want = torch::linear(x, w.to(torch::kBFloat16).to(torch::kFloat32), b);
  EXPECT_LT(((omni::nn::linear_rows(net->dec, x) - want).norm() / want.norm()).item<double>(), 1e-2);
  // still strict: a checkpoint without the weight is refused, naming it
  omni::io::save_safetensors(path, {{"dec.bias", b}, {"head.weight", hw}, {"head.bias", hb}});
  auto partial = omni::io::Checkpoint::open(path);
  try {
    omni::io::load_module(*net, partial);
    ADD_FAILURE() << "loaded without dec.weight";
  } catch (const omni::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'dec.weight'"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// --dtype bf16 on a CPU without bf16 GEMM kernels (and int8 anywhere): decoder linears stored
// narrow over fp32 compute; on CUDA, and on a CPU with the kernels, bf16 is the compute dtype.
// Inside NarrowLinearBuild(BFloat16) decoder linears are uninitialised bf16 that the strict loader
// converts an fp32 checkpoint into; linear_rows then equals fp32 math on the bf16-rounded weight
// for any row count (1-2 rows: the bf16 row kernel; more: the block-widened GEMM).
TEST(LinearNarrow, Bf16DecoderLinearsOverFp32Compute) {
  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA);
  const auto undef = c10::ScalarType::Undefined;
  EXPECT_EQ(omni::nn::compute_dtype(torch::kChar, cpu), torch::kFloat32);
  EXPECT_EQ(omni::nn::narrow_linear_dtype(torch::kChar, cpu), torch::kChar);
  EXPECT_EQ(omni::nn::compute_dtype(torch::kBFloat16, cuda), torch::kBFloat16);
  EXPECT_EQ(omni::nn::narrow_linear_dtype(torch::kBFloat16, cuda), undef);
  EXPECT_EQ(omni::nn::narrow_linear_dtype(torch::kFloat32, cpu), undef);
  const bool native = omni::nn::cpu_has_bf16_gemm();
  EXPECT_EQ(omni::nn::compute_dtype(torch::kBFloat16, cpu), native ? torch::kBFloat16 : torch::kFloat32);
  EXPECT_EQ(omni::nn::narrow_linear_dtype(torch::kBFloat16, cpu), native ? undef : torch::kBFloat16);
  omni::models::LoadOptions lo;
  lo.dtype = torch::kBFloat16;
  EXPECT_EQ(lo.narrow_linear_dtype(), undef);  // a model to be trained computes in the bf16 asked for
  EXPECT_EQ(lo.compute_dtype(), torch::kBFloat16);
  lo.inference_only = true;
  EXPECT_EQ(lo.compute_dtype(), native ? torch::kBFloat16 : torch::kFloat32);

  struct Net : torch::nn::Module {
    torch::nn::Linear dec{nullptr};
    torch::nn::Linear dec_tower{nullptr};
    torch::nn::Embedding table{nullptr};
    Net() {
      omni::nn::NarrowLinearBuild narrow(torch::kBFloat16);
      dec = register_module("dec", omni::nn::decoder_linear(40, 24, true));
      dec_tower = register_module("dec_tower", omni::nn::tower_linear(40, 24));
      table = register_module("table", omni::nn::embedding_table(30, 40));
    }
  };
  torch::manual_seed(7);
  const auto w = torch::randn({24, 40}), b = torch::randn({24}), t = torch::randn({30, 40});
  const std::string path = (std::filesystem::temp_directory_path() / "omni_bf16_narrow.safetensors").string();
  omni::io::save_safetensors(path, {{"dec.weight", w}, {"dec.bias", b}, {"dec_tower.weight", w}, {"dec_tower.bias", b},
                                    {"table.weight", t}});
  auto net = std::make_shared<Net>();
  EXPECT_EQ(net->dec->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(net->dec->bias.scalar_type(), torch::kFloat32);
  EXPECT_EQ(net->dec_tower->weight.scalar_type(), torch::kBFloat16);  // the towers too, in bf16 only
  EXPECT_EQ(net->dec_tower->bias.scalar_type(), torch::kFloat32);
  EXPECT_EQ(net->table->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(omni::nn::narrow_linear_build(), undef);  // the scope ended
  EXPECT_EQ(omni::io::load_module(*net, omni::io::Checkpoint::open(path)).tensors, 5u);
  EXPECT_TRUE(torch::equal(net->dec->weight, w.to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(net->dec_tower->weight, w.to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(net->dec->bias, b));
  std::filesystem::remove(path);
  c10::InferenceMode guard;
  const auto wr = w.to(torch::kBFloat16).to(torch::kFloat32);
  for (int64_t rows : {1, 2, 3, 37}) {
    const auto x = torch::randn({rows, 40});
    const auto got = omni::nn::linear_rows(net->dec, x);
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    EXPECT_LT((got - torch::linear(x, wr, b)).abs().max().item<float>(), 1e-4f) << rows;
    EXPECT_TRUE(torch::equal(omni::nn::linear_rows(net->dec_tower, x), got)) << rows;
  }
  const auto ids = torch::tensor({3, 29}, torch::kLong);
  EXPECT_TRUE(torch::equal(omni::nn::embed_rows(net->table, ids, torch::kFloat32),
                           t.to(torch::kBFloat16).to(torch::kFloat32).index_select(0, ids)));
}

// Weights stored narrower than the fp32 activations: int8 (with scales) and bf16 (the heads and
// tables of --dtype int8). linear_widened widens one block of output rows at a time in each
// thread (K = 2048: 128-row blocks for up to 128 rows of x, 256 for 300, so O = 4100 ends in a
// partial block) and must equal the GEMM over the whole widened weight, and give the same sums
// on one thread as on two; linear_rows sends 1..8 rows of a bf16 weight to the bf16 kernel with
// fp32 activations and the rest to linear_widened.
TEST(LinearWidened, BlocksEqualTheWholeWidenedWeightForInt8AndBf16) {
  c10::InferenceMode guard;
  torch::manual_seed(8);
  const int64_t O = 4100, K = 2048;
  const auto w = torch::randn({O, K}) * 0.05;
  const auto bias = torch::randn({O});
  auto [q, scale] = omni::nn::quantize_rows_int8(w);
  const auto deq = omni::nn::dequantize_rows_int8(q, scale, torch::kFloat32);
  const auto wb = w.to(torch::kBFloat16);
  EXPECT_EQ(omni::nn::widened_block_rows(5, K, O), 128);
  EXPECT_EQ(omni::nn::widened_block_rows(300, K, O), 256);
  EXPECT_EQ(omni::nn::widened_block_rows(5, 18944, 3584), 32);  // few rows of a wide K: small blocks
  EXPECT_EQ(omni::nn::widened_block_rows(100, 3584, 512), 112);
  EXPECT_EQ(omni::nn::widened_block_rows(300, 3584, 512), 128);  // at least four blocks
  EXPECT_EQ(omni::nn::widened_block_rows(9, 64, 40), 16);
  EXPECT_EQ(omni::nn::widened_block_rows(9, 64, 8), 8);
  for (int64_t rows : {1, 2, 5, 9, 300}) {
    const auto x = torch::randn({rows, 1, K});
    for (bool with_bias : {true, false}) {
      const auto b = with_bias ? bias : torch::Tensor();
      const auto want_q = torch::linear(x, deq, b), want_b = torch::linear(x, wb.to(torch::kFloat32), b);
      const auto got_q = omni::nn::linear_widened(x, q, scale, b), got_b = omni::nn::linear_widened(x, wb, {}, b);
      ASSERT_EQ(got_q.sizes(), want_q.sizes());
      ASSERT_EQ(got_b.scalar_type(), torch::kFloat32);
      const double mag = want_q.abs().max().item<double>();
      EXPECT_LT((got_q - want_q).abs().max().item<double>(), 1e-5 * mag) << rows << " rows";
      EXPECT_LT((got_b - want_b).abs().max().item<double>(), 1e-5 * mag) << rows << " rows";
      // through linear_rows, as a bf16 lm_head / tied embedding under fp32 compute is called
      const auto via_rows = omni::nn::linear_rows(x, wb, {}, b);
      ASSERT_EQ(via_rows.scalar_type(), torch::kFloat32);
      EXPECT_LT((via_rows - want_b).abs().max().item<double>(), 1e-5 * mag) << rows << " rows";
      if (rows <= omni::nn::kBf16PairedRowsMax) EXPECT_TRUE(omni::nn::linear_bf16_rows(x, wb, b).equal(via_rows));
      else EXPECT_FALSE(omni::nn::linear_bf16_rows(x, wb, b).defined());
      // int8 beyond the row loop's 4 rows takes the blocks
      if (rows > 4) EXPECT_TRUE(omni::nn::linear_rows(x, q, scale, b).equal(got_q));
      if (rows == 300 && with_bias) {  // the blocks do not depend on the thread count
        const int threads = at::get_num_threads();
        at::set_num_threads(2);
        const auto two_q = omni::nn::linear_widened(x, q, scale, b), two_b = omni::nn::linear_widened(x, wb, {}, b);
        at::set_num_threads(1);
        const auto one_q = omni::nn::linear_widened(x, q, scale, b), one_b = omni::nn::linear_widened(x, wb, {}, b);
        at::set_num_threads(threads);
        EXPECT_TRUE(one_q.equal(two_q));
        EXPECT_TRUE(one_b.equal(two_b));
      }
    }
  }
}

// --dtype int8 builds the vocabulary-sized heads and tables bf16 (uninitialised: the loader fills
// them) and looks the table up in the compute dtype.
TEST(LinearWidened, Int8BuildKeepsHeadsAndTablesInBf16) {
  torch::nn::Linear head{nullptr};
  torch::nn::Embedding table{nullptr};
  {
    omni::nn::NarrowLinearBuild int8(torch::kChar);
    EXPECT_EQ(omni::nn::narrow_linear_build(), torch::kChar);
    head = omni::nn::head_linear(16, 40, false);
    table = omni::nn::embedding_table(40, 16);
    EXPECT_EQ(omni::nn::decoder_linear(16, 8, false)->weight.scalar_type(), torch::kChar);
    EXPECT_EQ(omni::nn::tower_linear(16, 8)->weight.scalar_type(), torch::kFloat32);  // int8 keeps towers
  }
  EXPECT_EQ(omni::nn::tower_linear(16, 8)->weight.scalar_type(), torch::kFloat32);
  EXPECT_EQ(omni::nn::narrow_linear_build(), c10::ScalarType::Undefined);
  EXPECT_EQ(head->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(head->weight.sizes(), (std::vector<int64_t>{40, 16}));
  EXPECT_EQ(table->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(table->weight.sizes(), (std::vector<int64_t>{40, 16}));
  EXPECT_EQ(omni::nn::head_linear(16, 40, false)->weight.scalar_type(), torch::kFloat32);  // scope ended
  c10::InferenceMode guard;
  table->weight.copy_(torch::randn({40, 16}));
  const auto ids = torch::tensor({3, 0, 39}, torch::kInt64);
  const auto e = omni::nn::embed_rows(table, ids, torch::kFloat32);
  ASSERT_EQ(e.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(e.equal(table->weight.index_select(0, ids).to(torch::kFloat32)));
  EXPECT_EQ(omni::nn::embed_rows(table, ids, torch::kBFloat16).scalar_type(), torch::kBFloat16);
}

TEST(KVCache, ForkIsCopyOnWriteAndCapacityGrows) {
  nn::KVCache c(2, 1, 4);
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  c.reserve(3, opts);
  for (int64_t l = 0; l < 2; ++l) c.write(l, torch::full({1, 1, 3, 4}, 1.0 + l), torch::full({1, 1, 3, 4}, -1.0));
  c.length = 3;
  nn::KVCache f = c.fork();
  const int64_t cap = c.capacity();
  c.reserve(cap, opts);  // more than fits: grows, and the fork keeps its own rows
  EXPECT_GE(c.capacity(), 3 + cap);
  c.write(0, torch::full({1, 1, cap, 4}, 7.0), torch::full({1, 1, cap, 4}, 7.0));
  c.length += cap;
  EXPECT_EQ(f.length, 3);
  EXPECT_TRUE(torch::equal(f.keys(0), torch::full({1, 1, 3, 4}, 1.0)));
  EXPECT_TRUE(torch::equal(c.keys(1).narrow(2, 0, 3), torch::full({1, 1, 3, 4}, 2.0)));
  EXPECT_EQ(c.keys(0).size(2), 3 + cap);
  // a fork that appends copies first: the original is untouched
  f.reserve(1, opts);
  f.write(0, torch::full({1, 1, 1, 4}, 9.0), torch::full({1, 1, 1, 4}, 9.0));
  EXPECT_TRUE(torch::equal(c.keys(0).narrow(2, 3, 1), torch::full({1, 1, 1, 4}, 7.0)));
  EXPECT_THROW(f.write(0, torch::zeros({1, 1, 99, 4}), torch::zeros({1, 1, 99, 4})), Error);
}

TEST(Sampler, GeneratorDrawsEqualManualSeedAndNeverTouchTheGlobalOne) {
  auto logits = torch::randn({3, 50});
  generate::SamplerOptions o;
  o.temperature = 0.8;
  torch::manual_seed(123);
  auto want = torch::multinomial(torch::softmax(logits / 0.8, -1), 1).squeeze(-1);
  auto want_noise = torch::randn({4, 5});
  at::Generator g = generate::make_generator(torch::kCPU, 123);
  torch::manual_seed(999);  // the global generator is irrelevant from here on
  EXPECT_TRUE(torch::equal(generate::sample_next(logits, o, &g), want));
  EXPECT_TRUE(torch::equal(torch::randn({4, 5}, g), want_noise));
  // greedy is the argmax; top-k 1 is the argmax too, whatever the draw
  o.temperature = 0;
  EXPECT_TRUE(torch::equal(generate::sample_next(logits, o, &g), logits.argmax(-1)));
  EXPECT_TRUE(torch::equal(generate::sample_next(logits, o, nullptr), logits.argmax(-1)));  // greedy draws nothing
  o.temperature = 5.0;
  o.top_k = 1;
  EXPECT_TRUE(torch::equal(generate::sample_next(logits, o, &g), logits.argmax(-1)));
  o.top_k = 0;
  o.top_p = 1e-6;  // nucleus of one token
  EXPECT_TRUE(torch::equal(generate::sample_next(logits, o, &g), logits.argmax(-1)));
  EXPECT_THROW(generate::sample_next(logits, o, nullptr), Error);  // sampling needs the generator
}

TEST(Streamer, HoldsBackIncompleteUtf8AndEmitsOnlyNewText) {
  // token i decodes to byte i; "é" is two bytes (0xC3 0xA9)
  auto decode = [](const std::vector<int64_t>& t) {
    std::string s;
    for (auto b : t) s += static_cast<char>(b);
    // an incomplete trailing sequence decodes to U+FFFD, as a byte-level tokenizer does
    if (!s.empty() && static_cast<unsigned char>(s.back()) == 0xC3) {
      s.pop_back();
      s += "\xEF\xBF\xBD";
    }
    return s;
  };
  std::vector<std::string> pieces;
  generate::TextStreamer st(decode, [&](const std::string& p) { pieces.push_back(p); });
  st.put('a');
  st.put(0xC3);
  EXPECT_EQ(pieces, (std::vector<std::string>{"a"}));  // held back
  st.put(0xA9);
  st.put('b');
  st.finish();
  EXPECT_EQ(pieces, (std::vector<std::string>{"a", "\xC3\xA9", "b"}));
}

TEST(InterleavedInput, MarkersPlaceImagesOtherwiseImagesComeFirst) {
  const std::string img = std::string(OMNI_FIXTURES) + "/janus_tiny/test_image.png";
  auto in = generate::InterleavedInput::parse("A <image> and B <image>?", {img, img});
  ASSERT_EQ(in.chunks.size(), 5u);
  EXPECT_TRUE(in.placed_by_markers);
  EXPECT_EQ(in.chunks[0].text, "A ");
  EXPECT_TRUE(in.chunks[1].is_image());
  EXPECT_EQ(in.chunks[4].text, "?");
  EXPECT_EQ(in.text(), "A  and B ?");
  auto first = generate::InterleavedInput::parse("<image>", {img});  // no empty text chunks
  EXPECT_EQ(first.chunks.size(), 1u);
  auto plain = generate::InterleavedInput::parse("Describe.", {img});
  EXPECT_FALSE(plain.placed_by_markers);
  ASSERT_EQ(plain.num_images(), 1u);
  EXPECT_TRUE(plain.chunks[0].is_image());
  plain.decode_images([](const std::string& p) { return io::read_image(p); });
  EXPECT_GT(plain.chunks[0].image.width, 0);
  EXPECT_THROW(generate::InterleavedInput::parse("<image> <image>", {img}), Error);
  EXPECT_THROW(generate::InterleavedInput::parse("x", {"/no/such.png"}), Error);
  EXPECT_EQ(generate::numbered_output("d/out.png", 0), "d/out.png");
  EXPECT_EQ(generate::numbered_output("d/out.png", 2), "d/out_2.png");
}

TEST(Flow, ShiftedScheduleAndEulerLoop) {
  auto ts = generate::flow_timesteps(5, 3.0);
  ASSERT_EQ(ts.size(), 5u);
  EXPECT_FLOAT_EQ(ts.front(), 1.0f);
  EXPECT_FLOAT_EQ(ts.back(), 0.0f);
  EXPECT_NEAR(ts[2], 3 * 0.5 / (1 + 2 * 0.5), 1e-7);  // s t / (1 + (s - 1) t)
  // v = x - target: the Euler loop with dt = t_i - t_{i+1} from x0 ends at x0 - sum(v dt)
  auto x0 = torch::ones({2, 3});
  int calls = 0;
  auto x = generate::euler_flow(x0, ts, [&](int i, float t, const torch::Tensor& xt) {
    EXPECT_EQ(i, calls++);
    EXPECT_FLOAT_EQ(t, ts[i]);
    return torch::full_like(xt, 2.0);
  });
  EXPECT_EQ(calls, 4);
  EXPECT_TRUE(torch::allclose(x, torch::full({2, 3}, 1.0 - 2.0)));
}

namespace {
struct TextOnly final : models::Model, models::Understands {
  std::string family() const override { return "text_only"; }
  c10::Device device() const override { return torch::kCPU; }
  c10::ScalarType dtype() const override { return torch::kFloat32; }
  void understand(const models::Request& r, models::OutputSink& out) override { out.text("echo:" + r.input.text()); }
};
struct Collect final : models::OutputSink {
  std::string text_;
  void text(const std::string& p) override { text_ += p; }
  std::string image(const io::Image&) override { return "nowhere"; }
};
}  // namespace

TEST(ModelContract, RunModeChecksCapabilitiesInOnePlace) {
  TextOnly m;
  Collect sink;
  models::Request r;
  r.input = generate::InterleavedInput::parse("hi", {});
  models::run_mode(m, "understand", r, sink);
  EXPECT_EQ(sink.text_, "echo:hi");
  try {
    models::run_mode(m, "generate", r, sink);
    FAIL() << "generate on a model without the capability";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--mode generate: not supported by text_only");
  }
  EXPECT_THROW(models::run_mode(m, "paint", r, sink), Error);
  models::ExtraFlags x;
  x.set("--n", "12");
  x.set("--w", "0.5");
  x.set("--bad", "1x");
  EXPECT_EQ(x.get_int("--n", 0), 12);
  EXPECT_DOUBLE_EQ(x.get_double("--w", 0), 0.5);
  EXPECT_DOUBLE_EQ(x.get_double("--absent", 4.0), 4.0);
  EXPECT_THROW(x.get_int("--bad", 0), Error);
  EXPECT_EQ(models::parse_dtype("bf16"), torch::kBFloat16);
  EXPECT_THROW(models::parse_dtype("int3"), Error);
  EXPECT_TRUE(models::parse_device("cpu").is_cpu());
  EXPECT_THROW(models::parse_device("tpu:0"), Error);
  models::LoadOptions lo;
  EXPECT_EQ(lo.resolved_dtype(), torch::kFloat32);  // CPU default
  lo.device = torch::Device(torch::kCUDA, 0);
  EXPECT_EQ(lo.resolved_dtype(), torch::kBFloat16);  // CUDA default, as the official code runs
}

// Intra-op threads: --threads, else OMP_NUM_THREADS, else every CPU this process may run on (shared
// among a node's processes) -- not libtorch's physical-core count, which reads 1 on 2-vCPU VMs.
TEST(Threads, FlagThenEnvironmentThenTheCpusThisProcessMayUse) {
  const char* saved = std::getenv("OMP_NUM_THREADS");
  const std::string keep = saved ? saved : "";
  const int before = at::get_num_threads();
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const int cpus = CPU_COUNT(&set);
  EXPECT_EQ(models::set_threads(3), 3);
  EXPECT_EQ(at::get_num_threads(), 3);
  {  // and our own at::parallel_for calls use them (an OpenMP libtorch needs our code built with OpenMP)
    std::mutex m;
    std::set<int> used;
    at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
      std::lock_guard<std::mutex> lock(m);
      used.insert(at::get_thread_num());
    });
    EXPECT_EQ(used.size(), 3u);
  }
  setenv("OMP_NUM_THREADS", "2", 1);
  EXPECT_EQ(models::set_threads(0), 2);
  EXPECT_EQ(models::set_threads(1), 1);  // the flag wins
  setenv("OMP_NUM_THREADS", "none", 1);  // not a number: ignored
  EXPECT_EQ(models::set_threads(0), cpus);
  unsetenv("OMP_NUM_THREADS");
  EXPECT_EQ(models::set_threads(0), cpus);
  EXPECT_EQ(at::get_num_threads(), cpus);
  EXPECT_EQ(models::set_threads(0, 2 * cpus), 1);         // more local processes than CPUs: 1 each
  EXPECT_EQ(models::set_threads(0, 2), std::max(1, cpus / 2));
  if (saved) setenv("OMP_NUM_THREADS", keep.c_str(), 1);
  at::set_num_threads(before);
}
