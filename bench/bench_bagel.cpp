// BAGEL-7B-MoT speed at the REAL dimensions with random fp32 weights (no checkpoint; CPU), each
// stage next to a bound measured here (the bench_janus conventions):
//   FLOP-bound stages (ViT + connector, prefill, flow velocity, VAE): FLOPs / the fp32 GEMM rate of
//     a square torch::mm (best of 2048^3 and 4096^3 after warm-up); attention counted as full
//     T x S matmuls (4 T S hidden per layer, causal or not); the flow rows add the bytes of the und
//     expert, which the 2 marker rows of the query block stream for 2 rows, / the copy rate;
//   bandwidth-bound stages (greedy decode): bytes each step must stream (the und expert's weights,
//     lm_head, the KV cache it reads) / the memory-copy rate of a 1 GiB fp32 copy_ (read + written).
// The bounds are measured before and again after the stages (the cores may be shared with other
// jobs); the table uses the better of the two.
//   bench_bagel [--threads 2] [--quick] [--no_malloc_reuse] [--no_vae1024] [--device cpu|cuda] [--dtype fp32|bf16|int8]
// (--dtype is the MoT/ViT weights' dtype; the VAE stays fp32, as in the engine. int8 as the CLI:
// the MoT layer's linears quantized per channel, the embedding and lm_head bf16, everything else
// and the compute fp32; byte counts (bounds, weights) are of the tensors as stored.)
//
// ONE decoder layer. The whole BAGEL tree is 14.6 B parameters (the MoT LLM 14.1 B) = 58 GB in
// fp32, which does not fit the 24 GB machine this was written on, so the LLM is built with
// num_hidden_layers = 1 (one MoT layer: the und weights and their _moe_gen twins) and every LLM
// stage is extrapolated:
//   stage(28 layers) = once-per-forward parts + 28 x (measured forward with 1 layer - those parts),
// where the once-per-forward parts (token embedding, the final (routed) norm, lm_head / llm2vae,
// the flow query embedding vae2llm + time_embedder + latent_pos_embed) are timed on their own. The
// layers of the real model have identical shapes, so the per-layer time carries over; what does
// not is the KV cache of the other 27 layers (a few MB per layer at these lengths) and any
// cross-layer cache reuse (none: one expert of one layer is 0.93 GB, beyond every cache).
// Everything else is built at full size: the 152064 x 3584 embedding and lm_head (4.4 GB), the
// 26-layer SigLIP ViT, connector, sin-cos tables, time embedder, vae2llm/llm2vae and the FLUX VAE.
// The image-generation rows combine the measured flow velocities with the official schedule (50
// timesteps, shift 3, CFG in (0.4, 1] with cfg_text 4 and cfg_img 1.5: 3 branches on 41 of the 49
// evaluations, 1 on the rest).
//
// Order: bounds, then the VAE stages (the VAE alone in memory: the 1024^2 decode keeps 0.5-1 GB
// activations and 1 GiB attention score matrices live: RSS grows by ~9.6 GiB; skipped below 11 GiB
// MemAvailable), then the VAE is freed and the BAGEL tree (8.1 GB) built in the heap it leaves
// (malloc reuse), so the peak RSS is max(VAE phase, model phase): ~12.2 GiB measured.
// Weights use torch's default init. Full run: ~10 min on 2 cores.
// --quick: a smoke run (~35 s: vocab 8192 instead of 152064, small images / blocks, 1 rep).
#include <torch/torch.h>

#include "bench_util.h"

#include "omni/core/memory.h"
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "omni/core/progress.h"
#include "omni/generate/random.h"
#include "omni/models/bagel/config.h"
#include "omni/models/bagel/inferencer.h"
#include "omni/models/bagel/model.h"
#include "omni/models/request.h"
#include "omni/io/module_loader_torch.h"
#include "omni/models/bagel/vit_blocks.h"
#include "omni/nn/flux_vae.h"
#include "omni/nn/linear.h"
#include "omni/nn/qwen2_mot.h"
#include "omni/nn/siglip_navit.h"

namespace ob = omni::bagel;
namespace onn = omni::nn;
using clk = std::chrono::steady_clock;
using namespace omni::bench;

namespace {

// The device and the weights' dtype under test (--device / --dtype).
torch::Device g_dev = torch::kCPU;
torch::ScalarType g_dt = torch::kFloat32;
double g_es = 4.0;  // bytes per weight / cache element of the compute dtype
// --dtype int8 (and bf16 on a CPU without bf16 GEMM kernels): int8 (bf16) MoT linears, bf16
// vocabulary tables, fp32 compute (nn::narrow_linear_dtype)
c10::ScalarType g_narrow = c10::ScalarType::Undefined;
torch::TensorOptions fopts() { return torch::TensorOptions().device(g_dev).dtype(g_dt); }  // activations
torch::TensorOptions f32() { return torch::TensorOptions().device(g_dev).dtype(torch::kFloat32); }
torch::TensorOptions lopts() { return torch::TensorOptions().device(g_dev).dtype(torch::kLong); }

template <class F>
double best_of(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t = clk::now();
    f();
    if (g_dev.is_cuda()) torch::cuda::synchronize();  // time the queued GPU work too
    best = std::min(best, secs(t));
  }
  return best;
}

uint64_t current_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, rss = 0;
  f >> size >> rss;
  return rss * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

uint64_t mem_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}


// Weight elements of the Linear modules under m (what multiplies every token; embeddings excluded).
int64_t linear_numel(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& sub : m.modules(/*include_self=*/true))
    if (auto* l = sub->as<torch::nn::Linear>()) n += l->weight.numel();
  return n;
}

// The und (plain) and gen (_moe_gen) halves of one MoT layer: Linear weights and all parameters.
struct ExpertSizes {
  int64_t und_linear = 0, gen_linear = 0, und_params = 0, gen_params = 0;
  int64_t und_bytes = 0, gen_bytes = 0;  // as stored (int8 linears: 1 byte per weight)
};
ExpertSizes expert_sizes(torch::nn::Module& layer) {
  ExpertSizes s;
  for (const auto& p : layer.named_parameters()) {
    const bool gen = p.key().find("moe_gen") != std::string::npos;
    const bool lin = p.value().dim() == 2;  // Linear weights (norms and biases are 1-D)
    (gen ? s.gen_params : s.und_params) += p.value().numel();
    (gen ? s.gen_bytes : s.und_bytes) += p.value().numel() * static_cast<int64_t>(p.value().element_size());
    if (lin) (gen ? s.gen_linear : s.und_linear) += p.value().numel();
  }
  return s;
}

double mid_flops(const onn::FluxVaeMid& m, int64_t hw) {
  return resblock_flops(m->block_1, hw) + attnblock_flops(m->attn_1, hw) + resblock_flops(m->block_2, hw);
}
// FLUX decoder FLOPs for a latent of side `grid` (walking the real modules).
double vae_decode_flops(onn::FluxAutoEncoderImpl& vae, int64_t grid) {
  auto& d = *vae.decoder;
  int64_t hw = grid;
  double f = conv_flops(d.conv_in, hw, hw) + mid_flops(d.mid, hw);
  for (size_t r = 0; r < d.levels.size(); ++r) {
    auto& level = d.levels[d.levels.size() - 1 - r];
    for (auto& b : level->blocks) f += resblock_flops(b, hw);
    if (level->upsample) {
      hw *= 2;
      f += conv_flops(level->upsample->conv, hw, hw);
    }
  }
  return f + conv_flops(d.conv_out, hw, hw);
}
// FLUX encoder FLOPs for an image of side `side`.
double vae_encode_flops(onn::FluxAutoEncoderImpl& vae, int64_t side) {
  auto& e = *vae.encoder;
  int64_t hw = side;
  double f = conv_flops(e.conv_in, hw, hw);
  for (auto& level : e.levels) {
    for (auto& b : level->blocks) f += resblock_flops(b, hw);
    if (level->downsample) {
      hw /= 2;
      f += conv_flops(level->downsample->conv, hw, hw);
    }
  }
  return f + mid_flops(e.mid, hw) + conv_flops(e.conv_out, hw, hw);
}

// A table row, formatted at the end (the bounds are re-measured after the stages and the better of
// the two measurements is used). The bound of a row is flops / GEMM rate + bytes / copy rate; a row
// with count > 0 is a rate (count / seconds), else a time. fixed: preformatted (RSS, skipped).
struct Row {
  std::string stage;
  double seconds = 0, flops = 0, bytes = 0, count = 0;
  const char* prec = "%.3f";
  std::string note;
  bool rate_note = false;  // prepend "X GFLOP, Y GFLOP/s"
  bool fp32 = false;       // computes in fp32 whatever --dtype says (the VAE): bound at the fp32 GEMM rate
  std::vector<std::string> fixed;  // ours, bound, ratio
};

// GEMM rate (best of 2048^3 and, unless quick, 4096^3) and copy / read rates of 1 GiB.
struct Bounds {
  double gemm = 0, copy = 0, read = 0;
  double gemm_fp32 = 0;  // the fp32 GEMM rate, for the VAE (fp32 under every --dtype); = gemm for fp32
  double conv1x1 = 0, conv3x3 = 0;  // for reference only (oneDNN convolutions), not used as bounds
  std::string note;
};

std::string strf(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* f, ...) {
  char b[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}

Bounds measure_bounds(bool quick) {
  Bounds b;
  // FLOP/s of a square n^3 torch::mm in `o`'s dtype, best of reps after a warm-up
  auto square_gemm = [](const torch::TensorOptions& o, int64_t n, int reps) {
    auto x = torch::randn({n, n}, o), y = torch::randn({n, n}, o), c = torch::empty({n, n}, o);
    torch::mm_out(c, x, y);
    return 2.0 * n * n * n / best_of(reps, [&] { torch::mm_out(c, x, y); });
  };
  for (int64_t n : {int64_t{2048}, int64_t{4096}}) {
    if (quick && n == 4096) continue;
    const double rate = square_gemm(fopts(), n, n == 2048 ? (quick ? 2 : 8) : 3);
    b.note += (b.note.empty() ? "" : ", ") + std::to_string(n) + "^3: " + fmt("%.1f", rate / 1e9);
    b.gemm = std::max(b.gemm, rate);
  }
  b.gemm_fp32 = g_dt == torch::kFloat32 ? b.gemm : square_gemm(f32(), 2048, quick ? 2 : 4);
  const int64_t n = int64_t{1} << 28;  // 1 GiB of fp32
  auto x = torch::ones({n}, fopts()), y = torch::zeros({n}, fopts());
  y.copy_(x);
  b.copy = 2.0 * n * g_es / best_of(quick ? 1 : 3, [&] { y.copy_(x); });
  b.read = 1.0 * n * g_es / best_of(quick ? 1 : 3, [&] { auto sum = x.sum(); });
  {
    auto in = torch::randn({1, 1024, 64, 64}, f32()), w = torch::randn({1024, 1024, 1, 1}, f32());  // the VAE's fp32
    torch::conv2d(in, w);
    b.conv1x1 = 2.0 * 1024 * 1024 * 64 * 64 / best_of(3, [&] { auto o = torch::conv2d(in, w); });
    auto in3 = torch::randn({1, 512, 64, 64}, f32()), w3 = torch::randn({512, 512, 3, 3}, f32());
    torch::conv2d(in3, w3, {}, 1, 1);
    b.conv3x3 = 2.0 * 512 * 512 * 9 * 64 * 64 / best_of(3, [&] { auto o = torch::conv2d(in3, w3, {}, 1, 1); });
  }
  return b;
}

bool finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

const double kGiB = 1024.0 * 1024 * 1024;

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  bool quick = false, malloc_reuse = true, vae1024 = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--no_malloc_reuse")) malloc_reuse = false;
    else if (!std::strcmp(argv[i], "--no_vae1024")) vae1024 = false;
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) g_dev = omni::models::parse_device(argv[++i]);
    else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) g_dt = omni::models::parse_dtype(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_bagel [--threads N] [--quick] [--no_malloc_reuse] [--no_vae1024] [--device D] [--dtype T]\n");
      return 2;
    }
  }
  if (malloc_reuse) {  // as the omni CLI (tools/omni/main.cpp)
    omni::keep_freed_memory_for_reuse();
  }
  torch::set_num_threads(std::max(1, threads));
  g_narrow = onn::narrow_linear_dtype(g_dt, g_dev);
  g_dt = onn::compute_dtype(g_dt, g_dev);
  g_es = static_cast<double>(c10::elementSize(g_dt));
  c10::InferenceMode guard;
  torch::manual_seed(0);
  at::Generator rng = omni::generate::make_generator(g_dev, 0);
  auto total_t = clk::now();
  auto say = [&](const std::string& what) {
    std::fprintf(stderr, "[%6.1f s] %s (RSS %.2f GiB)\n", secs(total_t), what.c_str(), current_rss_bytes() / kGiB);
    std::fflush(stderr);
  };

  // ---- sizes (real BAGEL use; --quick shrinks them) ----
  const int reps = quick ? 1 : 2;
  const int64_t kLayersReal = 28;
  const int64_t vit_small = quick ? 56 : 518, vit_big = quick ? 112 : 980;  // pixels, multiples of 14
  const int64_t prefill_T = quick ? 64 : 512;
  const int64_t flow_ctx = 30;                                             // cached prompt rows
  const int64_t img_small = quick ? 64 : 512, img_big = quick ? 128 : 1024;  // generated image sides
  const int64_t decode_ctx = quick ? 64 : 600;
  const int decode_steps = quick ? 3 : 8;
  const int64_t vocab = quick ? 8192 : 152064;

  // ---- bounds (before any model exists; measured again at the end) ----
  const Bounds b0 = measure_bounds(quick);
  CopyProbe copy_probe(f32(), [] {  // sampled around the decode steps (bench_util.h)
    if (g_dev.is_cuda()) torch::cuda::synchronize();
  });
  const double copy_probe_at_b0 = std::max(copy_probe.sample(), copy_probe.sample());
  std::vector<CopyProbedStage> copy_probed;
  say("bounds measured");

  std::vector<Row> rows;
  auto add = [&](Row r) { rows.push_back(std::move(r)); };
  auto flop_row = [&](const std::string& name, double s, double flops, const std::string& extra = "", bool fp32 = false) {
    Row r;
    r.fp32 = fp32;
    r.stage = name;
    r.seconds = s;
    r.flops = flops;
    r.note = extra;
    r.rate_note = true;
    add(r);
  };

  // ---- VAE (FLUX autoencoder, real dimensions), alone in memory ----
  double vae_dec_small_s = 0, vae_dec_big_s = -1;
  int64_t vae_params = 0;
  {
    auto vae = std::make_shared<onn::FluxAutoEncoderImpl>();
    vae->to(g_dev);
    vae->eval();
    vae_params = numel_of(*vae);
    const int64_t f = vae->cfg.downsample_factor(), z = vae->cfg.z_channels;
    say("VAE built (" + std::to_string(vae_params) + " parameters)");
    vae->decode(torch::randn({1, z, 8, 8}, f32()));  // warm-up at 64^2
    {
      const int64_t g = img_small / f;
      auto zz = torch::randn({1, z, g, g}, f32());
      torch::Tensor img;
      vae_dec_small_s = best_of(1, [&] { img = vae->decode(zz); });
      if (!finite(img)) std::fprintf(stderr, "warning: non-finite VAE decode output\n");
      flop_row(strf("VAE decode %lldx%lldx%lld latent -> %lld^2 (s)", (long long)z, (long long)g, (long long)g,
                    (long long)img_small),
               vae_dec_small_s, vae_decode_flops(*vae, g), "1 run after a 64^2 warm-up", true);
    }
    say("VAE decode (small) timed");
    {
      auto x = torch::rand({1, 3, img_small, img_small}, f32()) * 2 - 1;
      vae->encode(torch::rand({1, 3, 64, 64}, f32()) * 2 - 1, {}, &rng);  // warm-up
      torch::Tensor lat;
      const double s = best_of(1, [&] { lat = vae->encode(x, {}, &rng); });
      if (!finite(lat)) std::fprintf(stderr, "warning: non-finite VAE encode output\n");
      flop_row(strf("VAE encode %lld^2 -> %lldx%lldx%lld latent (s)", (long long)img_small, (long long)z,
                    (long long)(img_small / f), (long long)(img_small / f)),
               s, vae_encode_flops(*vae, img_small), "1 run after a 64^2 warm-up; posterior sampled", true);
    }
    say("VAE encode timed");
    // 1024^2: 128-ch 1024^2 activations (0.5 GB each; the last upsample makes 256-ch 1 GB ones)
    // and the mid attention's [16384, 16384] scores (1 GiB, plus its softmax) live at once.
    // Measured: RSS grows by ~9.6 GiB during it.
    const uint64_t need = quick ? 0 : uint64_t{11} << 30;
    const uint64_t avail = mem_available_bytes();
    if (vae1024 && avail > need) {
      const int64_t g = img_big / f;
      auto zz = torch::randn({1, z, g, g}, f32());
      torch::Tensor img;
      const uint64_t before = current_rss_bytes();
      vae_dec_big_s = best_of(1, [&] { img = vae->decode(zz); });
      if (!finite(img)) std::fprintf(stderr, "warning: non-finite VAE decode output\n");
      flop_row(strf("VAE decode %lldx%lldx%lld latent -> %lld^2 (s)", (long long)z, (long long)g, (long long)g,
                    (long long)img_big),
               vae_dec_big_s, vae_decode_flops(*vae, g),
               strf("1 run; RSS %.2f GiB before, peak %.2f GiB after", before / kGiB, omni::peak_rss_bytes() / kGiB),
               true);
      say("VAE decode (big) timed");
    } else {
      Row r;
      r.stage = strf("VAE decode -> %lld^2 (s)", (long long)img_big);
      r.fixed = {"skipped", "-", "-"};
      r.note = vae1024 ? strf("MemAvailable %.1f GiB < 11 GiB", avail / kGiB) : "--no_vae1024";
      add(r);
    }
  }
  const double rss_vae_phase = static_cast<double>(omni::peak_rss_bytes());
  say("VAE freed");

  // ---- the BAGEL tree: real dimensions, ONE MoT decoder layer ----
  ob::BagelConfig cfg;
  cfg.dir = "<random>";
  {
    auto& l = cfg.llm.llm;
    l.vocab_size = vocab;
    l.hidden_size = 3584;
    l.intermediate_size = 18944;
    l.num_hidden_layers = 1;  // see the header: extrapolated x 28
    l.num_attention_heads = 28;
    l.num_key_value_heads = 4;
    l.head_dim = 128;
    l.max_position_embeddings = 32768;
    l.rms_norm_eps = 1e-6;
    l.rope_theta = 1e6;
    l.qkv_bias = true;
    l.attention_bias = false;
    l.tie_word_embeddings = false;
    l.hidden_act = "silu";
    cfg.llm.qk_norm = true;
    auto& v = cfg.vit;
    v.hidden_size = 1152;
    v.intermediate_size = 4304;
    v.num_hidden_layers = 27;
    v.num_attention_heads = 16;
    v.image_size = 980;
    v.patch_size = 14;
    v.hidden_act = "gelu_pytorch_tanh";
    v.layer_norm_eps = 1e-6;
    v.layers_built = ob::vit_inference_layers(27);  // 26
    v.validate("bench vit config");
    cfg.vae = onn::FluxVaeConfig{};
    cfg.latent_patch_size = 2;
    cfg.max_latent_size = 64;
    cfg.vit_max_num_patch_per_side = 70;
  }
  auto t_build = clk::now();
  std::shared_ptr<ob::BagelImpl> model;
  {
    omni::io::DefaultDtypeGuard dg(g_dt);  // built in the weights' dtype (no fp32 copy)
    model = std::make_shared<ob::BagelImpl>(cfg);
  }
  if (g_dev != torch::Device(torch::kCPU)) model->to(g_dev);
  model->eval();
  if (g_narrow != c10::ScalarType::Undefined) {  // as the CLI loads it: narrow decoder-layer linears, bf16 tables
    if (onn::is_int8(g_narrow)) onn::quantize_linears_int8(*model, "language_model.model.layers.");
    else onn::narrow_linears_bf16(*model, "language_model.model.layers.");
    for (auto* w : {&model->language_model->lm_head->weight, &model->language_model->model->embed_tokens->weight})
      w->set_data(w->to(torch::kBFloat16));
  }
  move_weights_to_huge_pages(*model);  // where the CLI's loader writes them
  // As omni infer and eval load it: fp32 / bf16 CPU ViT and connector weights stored transposed,
  // the layout OpenBLAS's sgemm runs fastest and oneDNN's packing reads fastest
  // (nn::store_linear_weights_transposed; a no-op for other dtypes / devices).
  onn::store_linear_weights_transposed(*model->vit_model);
  onn::store_linear_weights_transposed(*model->connector);
  const double build_s = secs(t_build);
  // Qwen2.5 ids of <|im_start|>, <|im_end|>, <|vision_start|>, <|vision_end|> (in range for --quick too).
  if (quick) model->ids = {vocab - 10, vocab - 9, vocab - 8, vocab - 7};
  else model->ids = {151644, 151645, 151652, 151653};
  auto& lm = model->language_model;
  auto& mot = lm->model;
  auto& layer = mot->layer_ptrs.at(0);
  const int64_t C = cfg.hidden_size();
  const int64_t n_params = numel_of(*model);
  const double n_bytes = static_cast<double>(bytes_of(*model));  // as stored
  const ExpertSizes es = expert_sizes(*layer);
  const int64_t layer_params = es.und_params + es.gen_params;
  const int64_t full_params = n_params + (kLayersReal - 1) * layer_params + (quick ? (152064 - vocab) * 2 * C : 0);
  const double head_es = static_cast<double>(lm->lm_head->weight.element_size());
  const double full_bytes = n_bytes + (kLayersReal - 1.0) * (es.und_bytes + es.gen_bytes) +
                            (quick ? (152064.0 - vocab) * 2 * C * head_es : 0.0);
  const double att_hidden = static_cast<double>(cfg.llm.llm.num_attention_heads * cfg.llm.llm.head_dim);
  const double rss_model = static_cast<double>(current_rss_bytes());
  say(strf("BAGEL tree built with 1 MoT layer (%lld parameters, %.2f GB) in %.1f s", (long long)n_params,
           n_bytes / 1e9, build_s));

  // Sampled between the runs of the ViT, prefill and flow stages (bench_util.h GemmProbe); built
  // after the VAE phase, so its 0.2 GB of matrices do not add to that phase's peak.
  const std::function<void()> sync = [] {
    if (g_dev.is_cuda()) torch::cuda::synchronize();
  };
  GemmProbe probe(fopts(), sync, quick);
  std::vector<ProbedStage> probed;

  // ---- 1. ViT + connector + vit_pos_embed (the rows of add_vit_block) ----
  {
    auto& vit = *model->vit_model;
    const double vit_lin = static_cast<double>(linear_numel(vit));
    const double conn_lin = static_cast<double>(linear_numel(*model->connector));
    const int64_t layers = cfg.vit.layers_built, W = cfg.vit.hidden_size;
    auto run = [&](int64_t side, int n_reps, const std::string& extra) {
      auto image = torch::rand({3, side, side}) * 2 - 1;
      auto packed = ob::pack_vit_images({image}, cfg.vit.patch_size, cfg.vit_max_num_patch_per_side);
      const int64_t N = packed.tokens.size(0);
      torch::Tensor out;
      const double s = best_of_probed(n_reps, probe, sync, [&] {
        out = ob::embed_vit_tokens(vit, *model->connector, *model->vit_pos_embed, packed.tokens.to(g_dev, g_dt),
                                   packed.position_ids,
                                   packed.seqlens);
      });
      if (!finite(out)) std::fprintf(stderr, "warning: non-finite ViT output\n");
      const double flops = 2.0 * N * (vit_lin + conn_lin) + layers * 4.0 * N * N * W;
      flop_row(strf("SigLIP ViT (26 layers) + connector + pos, %lld^2 = %lld patches (s)", (long long)side, (long long)N),
               s, flops, extra);
      probed.push_back({strf("ViT + connector + pos, %lld^2", (long long)side), flops, 0, s, probe.best()});
    };
    // Best of several: on a shared VM one run's layers took 97-164 ms for the same work (the
    // Janus tower, session 21), so a single run says more about the neighbours than the code.
    run(vit_small, quick ? 1 : 4, quick ? "1 run" : "best of 4, the first is the warm-up");
    say("ViT (small) timed");
    run(vit_big, quick ? 1 : 2, quick ? "1 run" : "best of 2, the first is the warm-up");
    say("ViT (big) timed");
  }

  // ---- 2. prefill: a text block through forward_inference (causal, und) ----
  auto ids_of = [&](int64_t n) {  // [<|im_start|>, n - 2 random ids, <|im_end|>]
    std::vector<int64_t> v{model->ids.bos};
    auto w = torch::randint(1000, std::min<int64_t>(vocab - 100, 150000), {n - 2}, torch::kInt64);
    for (int64_t i = 0; i < n - 2; ++i) v.push_back(w[i].item<int64_t>());
    v.push_back(model->ids.eos);
    return v;
  };
  const double und_layer_bytes = static_cast<double>(es.und_bytes);
  {
    const int64_t T = prefill_T;
    auto ids = torch::tensor(ids_of(T), torch::kLong).to(g_dev);
    torch::Tensor x, h;
    const double t_embed = best_of(3, [&] { x = mot->embed(ids); });
    auto pos = torch::arange(0, T, lopts());
    auto prefill = [&] {
      auto ctx = model->make_context();
      h = mot->forward_inference(x, pos, ctx, onn::TokenRoute::understanding(), true, true);
    };
    // A warm-up at the timed size: its first call faults in the activations, which a 28-layer
    // prefill pays once and this one layer would pay whole (as the flow stages below).
    prefill();
    const double t_fwd = best_of_probed(reps, probe, sync, prefill);
    if (!finite(h)) std::fprintf(stderr, "warning: non-finite prefill output\n");
    auto hr = torch::randn({T, C}, fopts());
    const double t_norm = best_of(3, [&] { auto y = mot->norm->forward(hr); });
    const double per_layer = std::max(1e-9, t_fwd - t_norm);
    const double ext = t_embed + t_norm + kLayersReal * per_layer;
    const double layer_flops = 2.0 * T * es.und_linear + 4.0 * T * T * att_hidden;
    flop_row(strf("prefill %lld text tokens, ONE layer (s/layer)", (long long)T), per_layer, layer_flops,
             strf("best of %d after a warm-up call; 1-layer forward_inference %.3f s - final norm %.4f s", reps, t_fwd, t_norm));
    probed.push_back({strf("prefill %lld text tokens, one layer", (long long)T), layer_flops, 0, per_layer, probe.best()});
    Row r;
    r.stage = strf("prefill %lld text tokens, 28 layers extrapolated (tokens/s)", (long long)T);
    r.seconds = ext;
    r.flops = kLayersReal * layer_flops;
    r.count = static_cast<double>(T);
    r.prec = "%.1f";
    r.note = strf("%.2f s = embed %.4f + norm %.4f + 28 x %.3f", ext, t_embed, t_norm, per_layer);
    add(r);
  }
  say("prefill timed");

  // ---- 3. one flow velocity (gen-mode query block against a cached prompt), two sizes ----
  std::vector<float> ts = ob::flow_timesteps(50, 3.0);
  int n_cfg = 0;
  const ob::FlowOptions fo;  // official defaults: interval [0.4, 1], text 4.0, img 1.5
  for (int i = 0; i + 1 < 50; ++i)
    if (ts[i] > static_cast<float>(fo.cfg_interval.first) && ts[i] <= static_cast<float>(fo.cfg_interval.second)) ++n_cfg;
  const int n_evals = 49;
  const int branches = 1 + (fo.cfg_text_scale > 1.0) + (fo.cfg_img_scale > 1.0);
  struct FlowResult {
    double image = 0, image_flops = 0, image_bytes = 0;
  };
  auto ctx_flow = model->make_context();
  model->add_text_block(ctx_flow, ids_of(flow_ctx));
  auto flow_stage = [&](int64_t side, int n_reps) {
    const int64_t ds = cfg.latent_downsample(), hh = side / ds, ww = side / ds, N = hh * ww, T = N + 2;
    const int64_t D = cfg.patch_latent_dim();
    auto x_t = torch::randn({N, D}, f32());  // the flow state is float32
    auto lpos = model->latent_position_ids(hh, ww);
    torch::Tensor query, v;
    const double t_query = best_of(3, [&] { query = model->flow_query(x_t, 0.9, lpos); });
    // One call first: the first calls at a size fault in their activations (bf16 512^2, one layer:
    // 109k + 42k pages, 1.67 and 1.07 s, then 0.73 s a call with none), which a generation's
    // 49 evaluations x 28 layers pay once.
    model->flow_velocity(ctx_flow, query);
    const double t_vel = best_of_probed(n_reps, probe, sync, [&] { v = model->flow_velocity(ctx_flow, query); });
    if (!finite(v)) std::fprintf(stderr, "warning: non-finite flow velocity\n");
    // once per forward inside flow_velocity: the routed final norm and llm2vae on the latent rows
    auto hr = torch::randn({T, C}, fopts());
    const double t_tail = best_of(3, [&] {
      auto route = onn::TokenRoute::gen_range(T, 1, T - 1);
      auto y = onn::route_rows(
          hr, route, [&](const torch::Tensor& r) { return mot->norm->forward(r); },
          [&](const torch::Tensor& r) { return mot->norm_moe_gen->forward(r); });
      auto o = model->llm2vae->forward(y.narrow(0, 1, T - 2));
    });
    const double per_layer = std::max(1e-9, t_vel - t_tail);
    const double branch = t_tail + kLayersReal * per_layer;
    const int64_t S = ctx_flow.length + T;
    // per layer: N gen rows through the gen expert + attention over S keys (FLOPs), and the 2
    // marker rows through the und expert, which stream its whole weights for 2 rows (bytes)
    const double layer_flops = 2.0 * N * es.gen_linear + 4.0 * T * S * att_hidden;
    const double layer_bytes = und_layer_bytes;
    const double q_flops = 2.0 * N * model->vae2llm->weight.numel();
    const double br_flops = kLayersReal * layer_flops + 2.0 * N * model->llm2vae->weight.numel();
    const double br_bytes = kLayersReal * layer_bytes;
    {
      Row r;
      r.stage = strf("flow velocity %lld^2: %lld+2 gen rows vs %lld cached, ONE layer (s/layer)", (long long)side,
                     (long long)N, (long long)ctx_flow.length);
      r.seconds = per_layer;
      r.flops = layer_flops;
      r.bytes = layer_bytes;
      r.rate_note = true;
      r.note = strf("best of %d after a warm-up call; bound + %.2f GB und-expert stream for the 2 markers; 1-layer flow_velocity %.3f s - "
                    "norm+llm2vae %.4f s",
                    n_reps, layer_bytes / 1e9, t_vel, t_tail);
      add(r);
      probed.push_back({strf("flow velocity %lld^2, one layer", (long long)side), layer_flops, layer_bytes, per_layer,
                        probe.best()});
    }
    const double plain = t_query + branch, guided = t_query + branches * branch;
    {
      Row r;
      r.stage = strf("flow velocity %lld^2, 1 branch, 28 layers extrapolated (s)", (long long)side);
      r.seconds = plain;
      r.flops = q_flops + br_flops;
      r.bytes = br_bytes;
      r.prec = "%.2f";
      r.note = strf("query embed %.4f + norm/llm2vae %.4f + 28 x %.3f", t_query, t_tail, per_layer);
      add(r);
    }
    {
      Row r;
      r.stage = strf("guided flow step %lld^2, %d branches (s)", (long long)side, branches);
      r.seconds = guided;
      r.flops = q_flops + branches * br_flops;
      r.bytes = branches * br_bytes;
      r.prec = "%.2f";
      r.note = "query embedded once; cond + cfg_text + cfg_img velocities (CFG/renorm arithmetic not counted)";
      add(r);
    }
    FlowResult fr;
    fr.image = n_cfg * guided + (n_evals - n_cfg) * plain;
    fr.image_flops = n_cfg * (q_flops + branches * br_flops) + (n_evals - n_cfg) * (q_flops + br_flops);
    fr.image_bytes = n_cfg * branches * br_bytes + (n_evals - n_cfg) * br_bytes;
    return fr;
  };
  auto fr_small = flow_stage(img_small, 2);  // the first rep warms up
  say("flow step (small) timed");
  auto fr_big = flow_stage(img_big, quick ? 1 : 2);  // best of 2: single 13 s fp32 runs read 0.78-0.88 of the bound
  say("flow step (big) timed");
  for (auto [side, fr, dec] : {std::tuple<int64_t, FlowResult, double>{img_small, fr_small, vae_dec_small_s},
                               std::tuple<int64_t, FlowResult, double>{img_big, fr_big, vae_dec_big_s}}) {
    Row r;
    r.stage = strf("%lld^2 image: 50 timesteps = 49 evals, CFG on %d, extrapolated (s)", (long long)side, n_cfg);
    r.seconds = fr.image;
    r.flops = fr.image_flops;
    r.bytes = fr.image_bytes;
    r.prec = "%.0f";
    r.note = strf("%d x guided + %d x 1 branch; + VAE decode %s s = %s s (prompt prefill not included)", n_cfg,
                  n_evals - n_cfg, dec >= 0 ? fmt("%.1f", dec).c_str() : "?",
                  dec >= 0 ? fmt("%.0f", fr.image + dec).c_str() : "?");
    add(r);
  }

  // ---- 4. greedy decode: one token against a decode_ctx-token context ----
  {
    auto ctx = model->make_context();
    model->add_text_block(ctx, ids_of(decode_ctx));
    int64_t id = 1000;
    double t_fwd = 0, t_head = 0;
    auto step = [&](bool timed) {
      auto t0 = clk::now();
      auto x = mot->embed(torch::tensor({id}, torch::kLong).to(g_dev));
      auto pos = torch::full({1}, ctx.rope, lopts());
      auto h = mot->forward_inference(x, pos, ctx, onn::TokenRoute::understanding(), true, true);
      ctx.rope += 1;
      auto t1 = clk::now();
      auto logits = model->logits(h);
      id = logits.argmax(-1).item<int64_t>();
      auto t2 = clk::now();
      if (timed) {
        t_fwd += std::chrono::duration<double>(t1 - t0).count();
        t_head += std::chrono::duration<double>(t2 - t1).count();
      }
    };
    step(false);  // warm-up (grows the KV buffer once)
    copy_probe.reset();
    copy_probe.sample();
    for (int s = 0; s < decode_steps; ++s) step(true);
    copy_probe.sample();
    t_fwd /= decode_steps;
    t_head /= decode_steps;
    auto hr = torch::randn({1, C}, fopts());
    const double t_norm = best_of(5, [&] { auto y = mot->norm->forward(hr); });
    const double per_layer = std::max(1e-9, t_fwd - t_norm);
    const double S = decode_ctx + 2 + decode_steps / 2.0;
    // at the cache's dtype: bf16 under bf16 decoder linears over fp32 compute (nn::kv_cache_dtype)
    const double kv_es = static_cast<double>(ctx.keys(0).element_size());
    const double kv_bytes = 2.0 * S * cfg.llm.llm.num_key_value_heads * cfg.llm.llm.head_dim * kv_es;
    const double head_bytes = lm->lm_head->weight.numel() * head_es + C * g_es;
    // Where the layer's time goes: each und Linear alone on 1 row (linear_rows, as the layer runs it).
    std::string lin_note;
    {
      auto& at = *layer->self_attn;
      const std::pair<const char*, torch::nn::Linear> lins[] = {
          {"q", at.q_proj}, {"k", at.k_proj}, {"v", at.v_proj}, {"o", at.o_proj},
          {"gate", layer->mlp->gate_proj}, {"up", layer->mlp->up_proj}, {"down", layer->mlp->down_proj}};
      double sum = 0;
      for (const auto& [name, l] : lins) {
        auto xin = torch::randn({1, l->weight.size(1)}, fopts());
        onn::linear_rows(l, xin);
        const double s = best_of(3, [&] { auto y = onn::linear_rows(l, xin); });
        sum += s;
        lin_note += strf("%s%s %.1f", lin_note.empty() ? "" : ", ", name,
                         l->weight.numel() * static_cast<double>(l->weight.element_size()) / s / 1e9);
      }
      lin_note = strf("1-row linear_rows GB/s: %s; the 7 alone %.4f s", lin_note.c_str(), sum);
      std::fprintf(stderr, "  decode: %s\n", lin_note.c_str());
    }
    // the copy rate of these minutes, as b0's 1 GiB copy scaled by the probe's samples
    copy_probed.push_back({"decode, ONE layer", und_layer_bytes + kv_bytes, per_layer,
                           b0.copy * copy_probe.best() / copy_probe_at_b0,
                           4.0 * static_cast<double>(es.und_params) + kv_bytes / kv_es * 4});
    {
      Row r;
      r.stage = strf("decode 1 token vs %lld-token context, ONE layer (s/layer)", (long long)decode_ctx);
      r.seconds = per_layer;
      r.bytes = und_layer_bytes + kv_bytes;
      r.prec = "%.4f";
      r.note = strf("mean of %d steps; streams %.2f GB und weights + %.1f MB KV; %s", decode_steps,
                    und_layer_bytes / 1e9, kv_bytes / 1e6, lin_note.c_str());
      add(r);
    }
    {
      Row r;
      r.stage = strf("lm_head (%lld x %lld) + argmax, 1 row (s)", (long long)vocab, (long long)C);
      r.seconds = t_head;
      r.bytes = head_bytes;
      r.prec = "%.4f";
      r.note = strf("streams %.2f GB", head_bytes / 1e9);
      add(r);
    }
    const double ext = t_head + t_norm + kLayersReal * per_layer;
    Row r;
    r.stage = "decode, 28 layers + lm_head extrapolated (tokens/s)";
    r.seconds = ext;
    r.bytes = kLayersReal * (und_layer_bytes + kv_bytes) + head_bytes;
    r.count = 1;
    r.note = strf("%.2f s/token = lm_head %.3f + 28 x %.4f; streams %.1f GB/token", ext, t_head, per_layer, r.bytes / 1e9);
    add(r);
  }
  say("decode timed");

  // ---- 5. peak RSS (before the closing bound measurement, which allocates 2 GiB) ----
  const double rss = static_cast<double>(omni::peak_rss_bytes());
  const double wbytes = n_bytes;
  {
    Row r;
    r.stage = "peak RSS (GiB; bound = the weights of the 1-layer BAGEL tree; the VAE is freed before it is built)";
    r.fixed = {fmt("%.2f", rss / kGiB), fmt("%.2f", wbytes / kGiB), fmt("%.2f", rss / wbytes)};
    r.note = strf("VAE phase peak %.2f GiB; after building the tree %.2f GiB; the full 28-layer model would hold "
                  "%.1f GB of weights (VAE fp32)",
                  rss_vae_phase / kGiB, rss_model / kGiB, (full_bytes + vae_params * 4.0) / 1e9);
    add(r);
  }

  // ---- bounds again (the machine is shared: use the better of the two measurements) ----
  model.reset();
  const Bounds b1 = measure_bounds(quick);
  say("bounds measured again");
  const double gemm_flops = std::max(b0.gemm, b1.gemm), copy_bps = std::max(b0.copy, b1.copy);
  const double gemm_fp32 = std::max(b0.gemm_fp32, b1.gemm_fp32);
  const double read_bps = std::max(b0.read, b1.read);

  std::printf("\nBAGEL-7B-MoT at the real dimensions, random %s weights, %s, %d threads%s\n",
              (g_narrow != c10::ScalarType::Undefined ? omni::models::dtype_name(g_narrow) + " (MoT linears; fp32 compute)"
                                                       : omni::models::dtype_name(g_dt))
                  .c_str(),
              g_dev.str().c_str(), threads,
              quick ? " [--quick: vocab 8192, small sizes, 1 rep]" : "");
  std::printf("LLM built with ONE MoT decoder layer (und + _moe_gen twins, %lld parameters); every LLM stage is\n"
              "extrapolated as once-per-forward parts + 28 x (1-layer forward - those parts), each part timed on its own.\n"
              "Built: %lld parameters (%.2f GB); the real tree: %lld parameters (%.1f GB) + VAE %lld.\n",
              (long long)layer_params, (long long)n_params, n_bytes / 1e9, (long long)full_params,
              full_bytes / 1e9, (long long)vae_params);
  std::printf(malloc_reuse ? "[malloc reuse as the CLI: blocks under 256 MiB stay in the heap for reuse (omni/core/memory.h)]\n"
                           : "[--no_malloc_reuse: glibc defaults, blocks over 32 MB are munmapped on free]\n");
  std::printf("bounds (better of start / end): GEMM %.1f GFLOP/s (start %s; end %s GFLOP/s);\n"
              "        memory copy %.1f GB/s (1 GiB fp32 copy_, bytes read + written; start %.1f, end %.1f;\n"
              "        for reference a read-only sum of the same 1 GiB: %.1f GB/s)\n"
              "for reference (not bounds): fp32 conv2d (oneDNN) 1x1 1024->1024 at 64^2: %.1f GFLOP/s, 3x3 512->512 at\n"
              "        64^2: %.1f GFLOP/s (better of start / end); the VAE runs on these, hence VAE ours/bound < 1\n",
              gemm_flops / 1e9, b0.note.c_str(), b1.note.c_str(), copy_bps / 1e9, b0.copy / 1e9, b1.copy / 1e9,
              read_bps / 1e9, std::max(b0.conv1x1, b1.conv1x1) / 1e9, std::max(b0.conv3x3, b1.conv3x3) / 1e9);
  if (g_dt != torch::kFloat32)
    std::printf("VAE rows (fp32 under every --dtype): bound at the fp32 GEMM rate, %.1f GFLOP/s (2048^3, better of start / end)\n",
                gemm_fp32 / 1e9);
  std::printf("flow schedule: 50 timesteps, shift 3, cfg_interval (0.4, 1]: %d of the 49 evaluations run %d branches "
              "(cfg_text 4.0, cfg_img 1.5), %d run 1\n",
              n_cfg, branches, n_evals - n_cfg);
  std::printf("model built in %.1f s (torch default init); total bench time %.0f s\n\n", build_s, secs(total_t));
  std::printf("| stage | ours | bound | ours/bound | notes |\n|---|---:|---:|---:|---|\n");
  for (const auto& r : rows) {
    std::string ours, bound, ratio, note = r.note;
    if (!r.fixed.empty()) {
      ours = r.fixed[0], bound = r.fixed[1], ratio = r.fixed[2];
    } else {
      const double bs = r.flops / (r.fp32 ? gemm_fp32 : gemm_flops) + r.bytes / copy_bps;
      if (r.count > 0) {
        ours = fmt(r.prec, r.count / r.seconds), bound = fmt(r.prec, r.count / bs), ratio = fmt("%.2f", bs / r.seconds);
      } else {
        ours = fmt(r.prec, r.seconds), bound = fmt(r.prec, bs), ratio = fmt("%.2f", r.seconds / bs);
      }
      if (r.rate_note)
        note = strf("%.1f GFLOP, %.1f GFLOP/s", r.flops / 1e9, r.flops / r.seconds / 1e9) + (note.empty() ? "" : "; " + note);
    }
    std::printf("| %s | %s | %s | %s | %s |\n", r.stage.c_str(), ours.c_str(), bound.c_str(), ratio.c_str(), note.c_str());
  }
  std::printf("\nours/bound: for times > 1 is slower than the bound, for rates (tokens/s) < 1 is below it.\n"
              "Bounds: ViT, prefill, flow and VAE = FLOPs / GEMM rate (the VAE's in fp32; attention counted as full T x S\n"
              "matmuls, causal or not; the flow rows add the und-expert weight stream of the 2 marker rows / copy rate);\n"
              "decode = (weights streamed per step, embedding gathers excluded, + KV cache read) / memory-copy rate.\n"
              "Noise: best-of-N (or single) wall times on a machine whose cores may be shared with other jobs.\n");
  print_probed_table(probed, gemm_flops, copy_bps, quick);
  print_copy_probed_table(copy_probed, copy_bps);
  return 0;
}
