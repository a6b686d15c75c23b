// SenseNova-U1-8B-MoT speed at the REAL dimensions with random fp32 weights (no checkpoint; CPU or
// --device cuda), each stage next to a bound measured here (bench_bagel's conventions):
//   FLOP-bound stages (understanding prefill, a guided flow step): FLOPs / the fp32 GEMM rate of a
//     square torch::mm (best of 2048^3 and 4096^3); linears count 2 x rows x weights, attention
//     4 x T x S x hidden per layer (full T x S products, causal or not);
//   the bandwidth-bound stage (one greedy decode step): the bytes it must stream (the und weights
//     of 42 layers + lm_head) / the rate of a 1 GiB copy.
//   bench_u1 [--threads 2] [--quick] [--device cpu|cuda] [--dtype fp32|bf16|int8]
// (int8: the decoder layers' linears int8 with per-channel scales, all else and compute fp32.)
//
// ONE decoder layer pair. The released model is 42 layers x 2 branches of ~193 M parameters plus a
// 151936 x 4096 embedding and lm_head: 17.5 B parameters, 70 GB in fp32, beyond a 24 GB machine.
// So the decoder is built with num_hidden_layers = 1 (the und weights and their _mot_gen twins)
// and every decoder stage is extrapolated:
//   stage(42 layers) = once-per-forward parts + 42 x (one layer),
// the once-per-forward parts (the patch embedders, the timestep / noise-scale embedders, the final
// norm, fm_head, lm_head) timed on their own at full size. The 41 other layers have identical
// shapes, so the per-layer time carries over (one branch of one layer is 0.77 GB: no cross-layer
// cache reuse to lose); their KV caches (a few MB each here) are not allocated.
// The image rows use the official t2i defaults: 50 Euler steps, CFG 4 on every step (interval
// [0, 1]) = 2 branches per step, the condition prefix of the generation system prompt + a short
// prompt (~220 tokens), the unconditional one (~10 tokens). Peak RSS ~8 GiB.
// Full run: ~5 min on 2 cores; --quick (~30 s): vocab 8192, 512^2 / 256^2 images, 1 rep.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "omni/core/memory.h"
#include "omni/core/progress.h"
#include "omni/io/module_loader_torch.h"
#include "omni/models/request.h"
#include "omni/models/sensenova_u1/model.h"
#include "omni/nn/linear.h"

namespace u1 = omni::sensenova_u1;
using namespace omni::bench;

namespace {
torch::Device g_dev = torch::kCPU;
torch::ScalarType g_dt = torch::kFloat32;   // compute (and, but for int8, weight) dtype
torch::ScalarType g_wdt = torch::kFloat32;  // --dtype as given: int8 = int8 decoder linears, fp32 compute

template <class F>
double best_of(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t = clk::now();
    f();
    if (g_dev.is_cuda()) torch::cuda::synchronize();
    best = std::min(best, secs(t));
  }
  return best;
}

struct Bounds {
  double gemm = 0, copy = 0;
};
Bounds measure_bounds(bool quick) {
  Bounds b;
  const auto o = torch::TensorOptions().device(g_dev).dtype(g_dt);
  for (int64_t n : {int64_t{2048}, int64_t{4096}}) {
    if (quick && n == 4096) continue;
    auto x = torch::randn({n, n}, o), y = torch::randn({n, n}, o), c = torch::empty({n, n}, o);
    torch::mm_out(c, x, y);
    b.gemm = std::max(b.gemm, 2.0 * n * n * n / best_of(3, [&] { torch::mm_out(c, x, y); }));
  }
  const int64_t n = int64_t{1} << 28;
  auto x = torch::ones({n}, o), y = torch::zeros({n}, o);
  y.copy_(x);
  b.copy = 2.0 * n * c10::elementSize(g_dt) / best_of(quick ? 1 : 3, [&] { y.copy_(x); });
  return b;
}

u1::U1Config real_config(bool quick) {
  u1::U1Config c;  // the defaults are SenseNova-U1-8B-MoT's sizes
  c.llm.num_hidden_layers = 1;
  if (quick) c.llm.vocab_size = 8192;
  c.vision.llm_hidden_size = c.llm.hidden_size;
  c.noise_scale = 1.0;
  c.noise_scale_base_image_seq_len = 64;
  c.noise_scale_max_value = 8.0;
  return c;
}

// Weight elements of one branch of the layer (und: plain names, gen: _mot_gen), matrices only.
int64_t branch_linear(torch::nn::Module& layer, bool gen) {
  int64_t n = 0;
  for (const auto& p : layer.named_parameters())
    if (p.value().dim() == 2 && (p.key().find("mot_gen") != std::string::npos) == gen) n += p.value().numel();
  return n;
}

struct Row {
  std::string stage;
  double seconds, bound;
  std::string note;
};
}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) g_dev = omni::models::parse_device(argv[++i]);
    else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) {
      g_wdt = omni::models::parse_dtype(argv[++i]);
    }
    else {
      std::fprintf(stderr, "usage: bench_u1 [--threads N] [--quick] [--device D] [--dtype T]\n");
      return 2;
    }
  }
  g_dt = omni::nn::compute_dtype(g_wdt, g_dev);
  const auto narrow = omni::nn::narrow_linear_dtype(g_wdt, g_dev);  // the decoder linears' dtype where narrower
  omni::keep_freed_memory_for_reuse();
  torch::set_num_threads(std::max(1, threads));
  c10::InferenceMode guard;
  torch::manual_seed(0);
  const int reps = quick ? 1 : 2;
  const int64_t L = 42;  // the released decoder depth

  const Bounds b0 = measure_bounds(quick);
  const auto cfg = real_config(quick);
  u1::NeoChat model(nullptr);
  {
    omni::io::DefaultDtypeGuard dg(g_dt);
    model = u1::NeoChat(cfg);
  }
  model->to(g_dev);
  model->eval();
  if (omni::nn::is_int8(g_wdt)) omni::nn::quantize_linears_int8(*model, "language_model.model.layers.");
  // bf16 on a CPU without bf16 GEMM kernels: bf16 decoder linears over fp32 compute, as the CLI builds it
  if (narrow == torch::kBFloat16)
    omni::nn::narrow_linears_bf16(*model, "language_model.model.layers.");
  move_weights_to_huge_pages(*model);  // where the CLI's loader writes them
  auto& lm = *model->language_model->model;
  auto& layer = *lm.layer_ptrs[0];
  const int64_t C = cfg.llm.hidden_size, und_lin = branch_linear(layer, false), gen_lin = branch_linear(layer, true);
  const auto fo = torch::TensorOptions().device(g_dev).dtype(g_dt);
  std::vector<Row> rows;

  // ---- understanding: a 1024^2 image (1024 tokens) + 60 text tokens --------------------------
  const int64_t und_side = quick ? 512 : 1024, p = cfg.patch_size();
  const int64_t gh = und_side / p, img_tokens = gh * gh / 4, text = 60, T = img_tokens + text;
  auto pixels = torch::randn({gh * gh, 3 * p * p}, fo);
  double t_vis = best_of(reps, [&] { model->vision_embeds(pixels, {{gh, gh}}); });
  std::vector<int64_t> tv(T);
  for (int64_t i = 0; i < T; ++i) tv[i] = i < 20 ? i : (i < 20 + img_tokens ? 20 : i - img_tokens + 21);
  auto t_idx = torch::tensor(tv, torch::kLong).to(g_dev);
  auto idx = torch::stack({t_idx, torch::zeros_like(t_idx), torch::zeros_like(t_idx)});
  auto x = torch::randn({T, C}, fo) * 0.02;
  double t_layer = best_of(reps, [&] {
    auto ctx = model->make_context();
    model->prefill(ctx, x, idx);
  });
  double t_head = best_of(reps, [&] { model->logits(x.narrow(0, T - 1, 1)); });
  const double vis_flops = 2.0 * gh * gh * 3 * p * p * cfg.vision.hidden_size +
                           2.0 * img_tokens * cfg.vision.hidden_size * 4 * C;
  const double prefill_flops = L * (2.0 * T * und_lin + 4.0 * T * T * C);
  rows.push_back({"understanding prefill " + std::to_string(und_side) + "^2 (" + std::to_string(T) + " tokens, 42 layers)",
                  t_vis + L * t_layer + t_head, (vis_flops + prefill_flops) / b0.gemm,
                  fmt("%.0f GFLOP", (vis_flops + prefill_flops) / 1e9)});

  // ---- one greedy decode step (und weights of 42 layers + lm_head streamed) -------------------
  {
    auto ctx = model->make_context();
    model->prefill(ctx, x, idx);
    double t_dec = best_of(reps + 1, [&] {
      auto c2 = ctx;  // the same cache position each time (copy-on-write)
      c2.kv = ctx.kv.fork();
      model->decode_step(c2, 5);
    });
    const double head_bytes = static_cast<double>(cfg.llm.vocab_size) * C * c10::elementSize(g_dt);
    const double t_dec42 = L * (t_dec - t_head) + t_head;
    const double bytes = (L * und_lin) * c10::elementSize(narrow != c10::ScalarType::Undefined ? narrow : g_dt) + head_bytes;
    rows.push_back({"greedy decode step (per token)", t_dec42, bytes / b0.copy, fmt("%.1f GB streamed", bytes / 1e9)});
  }

  // ---- one guided flow step: 2 branches (cond ~220-token prefix, uncond ~10) ------------------
  auto cond = model->make_context(), unc = model->make_context();
  {
    auto mk = [&](int64_t n) {
      auto t = torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(g_dev));
      return torch::stack({t, torch::zeros_like(t), torch::zeros_like(t)});
    };
    model->prefill(cond, torch::randn({220, C}, fo) * 0.02, mk(220));
    model->prefill(unc, torch::randn({10, C}, fo) * 0.02, mk(10));
  }
  for (int64_t side : quick ? std::vector<int64_t>{256, 512} : std::vector<int64_t>{1024, 2048}) {
    const int64_t th = side / 32, n = th * th;
    auto img = torch::randn({1, 3, side, side}, fo);
    auto t = torch::scalar_tensor(0.3f);
    const double ratio = cfg.noise_scale_for(n) / cfg.noise_scale_max_value;
    torch::Tensor gin;
    double t_in = best_of(reps, [&] { gin = model->gen_inputs(img, t, ratio); });
    auto gidx_c = model->image_indexes(th, th, 220), gidx_u = model->image_indexes(th, th, 10);
    double t_c = best_of(reps, [&] { model->predict_x(cond, gin, gidx_c); });
    double t_u = best_of(reps, [&] { model->predict_x(unc, gin, gidx_u); });
    torch::Tensor hrows = torch::randn({n, C}, fo);
    double t_fm = best_of(reps, [&] { model->fm_modules->fm_head->forward(hrows); });
    const double step = t_in + (L * (t_c - t_fm) + t_fm) + (L * (t_u - t_fm) + t_fm);
    const double fm_flops = 2.0 * n * (C * u1::kFmHeadWidth + u1::kFmHeadWidth * cfg.pixel_patch_dim());
    const double emb_flops = 2.0 * n * 4 * 3 * p * p * cfg.vision.hidden_size + 2.0 * n * cfg.vision.hidden_size * 4 * C;
    auto branch = [&](int64_t prefix) { return L * (2.0 * n * gen_lin + 4.0 * n * (prefix + n) * C) + fm_flops; };
    const double flops = emb_flops + branch(220) + branch(10);
    rows.push_back({"guided flow step " + std::to_string(side) + "^2 (" + std::to_string(n) + " tokens x 2 branches)", step,
                    flops / b0.gemm, fmt("%.0f GFLOP", flops / 1e9) + "; 50 steps: " + fmt("%.0f s", 50 * step)});
  }
  const Bounds b1 = measure_bounds(quick);
  const double gemm = std::max(b0.gemm, b1.gemm), copy = std::max(b0.copy, b1.copy);

  std::printf("bench_u1: SenseNova-U1-8B-MoT dims (hidden %ld, 42 layers x 2 branches extrapolated from 1), %s %s, %d threads\n",
              static_cast<long>(C), g_dev.str().c_str(),
              (omni::models::dtype_name(g_wdt) + (narrow == torch::kBFloat16 ? " (decoder linears; fp32 compute)" : ""))
                  .c_str(),
              threads);
  std::printf("bounds: GEMM %.1f GFLOP/s, copy %.1f GB/s (better of before / after)\n\n", gemm / 1e9, copy / 1e9);
  std::printf("| stage | ours | bound | ours / bound | note |\n|---|---:|---:|---:|---|\n");
  for (auto& r : rows) {
    // the bounds were computed with b0; rescale to the better measurement
    const bool bw = r.stage.rfind("greedy", 0) == 0;
    const double bound = r.bound * (bw ? b0.copy / copy : b0.gemm / gemm);
    std::printf("| %s | %.3f s | %.3f s | %.2f | %s |\n", r.stage.c_str(), r.seconds, bound, r.seconds / bound, r.note.c_str());
  }
  std::printf("\npeak RSS %s (official PyTorch: not measured on this machine)\n",
              omni::format_bytes(omni::peak_rss_bytes()).c_str());
  return 0;
}
