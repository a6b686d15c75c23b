#include "omni/models/sensenova_u1/model.h"

#include <limits>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/nn/rope.h"
#include "omni/nn/uninitialised.h"

namespace omni::sensenova_u1 {

// ---- patch embedders -------------------------------------------------------------------------
NeoVisionEmbeddingsImpl::NeoVisionEmbeddingsImpl(const VisionConfig& c) : cfg(c) {
  const int64_t p = c.patch_size, m = c.merge();
  patch_embedding = register_module(
      "patch_embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, c.hidden_size, p).stride(p)));
  dense_embedding = register_module(
      "dense_embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.hidden_size, c.llm_hidden_size, m).stride(m)));
}

namespace {
// The official apply_rotary_emb_1d on x [N, d] (float32): pairs (x[2i], x[2i+1]) rotated by
// position * inv_freq[i].
torch::Tensor rotate_pairs(const torch::Tensor& x, const torch::Tensor& positions, const torch::Tensor& inv_freq) {
  const int64_t N = x.size(0), d = x.size(1);
  auto angle = positions.to(torch::kFloat32).unsqueeze(1) * inv_freq.unsqueeze(0);  // [N, d/2] (== torch.outer)
  auto cos = angle.cos(), sin = angle.sin();
  auto pairs = x.view({N, d / 2, 2});
  auto x1 = pairs.select(2, 0), x2 = pairs.select(2, 1);
  return torch::stack({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, 2).view({N, d});
}
}  // namespace

torch::Tensor NeoVisionEmbeddingsImpl::forward(const torch::Tensor& pixel_values, const std::vector<GridHW>& grids) {
  const int64_t E = cfg.hidden_size, C = cfg.llm_hidden_size, m = cfg.merge();
  int64_t total = 0;
  for (const auto& [h, w] : grids) {
    check(h > 0 && w > 0 && h % m == 0 && w % m == 0, "patch grid",
          "each side must be a positive multiple of " + std::to_string(m) + " patches (got " + std::to_string(h) + "x" +
              std::to_string(w) + ")");
    total += h * w;
  }
  check(pixel_values.dim() == 2 && pixel_values.size(0) == total &&
            pixel_values.size(1) == cfg.num_channels * cfg.patch_size * cfg.patch_size,
        "pixel_values", "expects [" + std::to_string(total) + ", " +
                            std::to_string(cfg.num_channels * cfg.patch_size * cfg.patch_size) + "] patch rows");
  const auto wdt = patch_embedding->weight.scalar_type();
  // Conv2d(k = s = patch) on one patch per row == a matmul with the flattened (c, py, px) kernel.
  auto x = torch::gelu(torch::addmm(patch_embedding->bias, pixel_values.to(wdt), patch_embedding->weight.view({E, -1}).t()));
  // 2-D RoPE in float32: columns rotate the first half, rows the second.
  auto inv = nn::rope_inv_freq(E / 2, cfg.rope_theta_vision, x.device());
  std::vector<torch::Tensor> xs, ys;
  const auto li = torch::TensorOptions().dtype(torch::kLong).device(x.device());
  for (const auto& [h, w] : grids) {
    auto idx = torch::arange(h * w, li);
    xs.push_back(idx.remainder(w));
    ys.push_back(idx.div(w, "floor"));
  }
  auto px = torch::cat(xs), py = torch::cat(ys);
  auto xf = x.to(torch::kFloat32);
  x = torch::cat({rotate_pairs(xf.narrow(1, 0, E / 2), px, inv), rotate_pairs(xf.narrow(1, E / 2, E / 2), py, inv)}, 1)
          .to(wdt);
  // Conv2d(k = s = merge) over each image's patch grid == a matmul over (E, ky, kx) neighbourhoods.
  auto wd = dense_embedding->weight.view({C, -1}).t();
  std::vector<torch::Tensor> out;
  int64_t at = 0;
  for (const auto& [h, w] : grids) {
    auto g = x.narrow(0, at, h * w).view({h / m, m, w / m, m, E}).permute({0, 2, 4, 1, 3}).reshape({h * w / (m * m), -1});
    out.push_back(torch::addmm(dense_embedding->bias, g, wd));
    at += h * w;
  }
  return out.size() == 1 ? out[0] : torch::cat(out);
}

NeoVisionModelImpl::NeoVisionModelImpl(const VisionConfig& c) {
  embeddings = register_module("embeddings", NeoVisionEmbeddings(c));
}

FmModulesImpl::FmModulesImpl(const U1Config& c) {
  const int64_t C = c.llm.hidden_size;
  vision_model_mot_gen = register_module("vision_model_mot_gen", NeoVisionModel(c.vision));
  timestep_embedder = register_module("timestep_embedder", nn::TimestepEmbedder(C));
  if (c.add_noise_scale_embedding) noise_scale_embedder = register_module("noise_scale_embedder", nn::TimestepEmbedder(C));
  fm_head = register_module("fm_head", torch::nn::Sequential(torch::nn::Linear(C, kFmHeadWidth), torch::nn::GELU(),
                                                             torch::nn::Linear(kFmHeadWidth, c.pixel_patch_dim())));
}

// ---- layouts ---------------------------------------------------------------------------------
torch::Tensor patchify(const torch::Tensor& images, int64_t p, bool channel_first) {
  check(images.dim() == 4 && images.size(1) == 3 && images.size(2) % p == 0 && images.size(3) % p == 0, "patchify",
        "expects [B, 3, H, W] with H and W multiples of " + std::to_string(p));
  const int64_t B = images.size(0), h = images.size(2) / p, w = images.size(3) / p;
  auto x = images.reshape({B, 3, h, p, w, p});
  x = channel_first ? x.permute({0, 2, 4, 1, 3, 5}) : x.permute({0, 2, 4, 3, 5, 1});  // nhwcpq | nhwpqc
  return x.reshape({B, h * w, p * p * 3});
}

torch::Tensor unpatchify(const torch::Tensor& tokens, int64_t p, int64_t height, int64_t width) {
  const int64_t h = height / p, w = width / p;
  check(tokens.dim() == 3 && tokens.size(1) == h * w && tokens.size(2) == p * p * 3, "unpatchify",
        "expects [B, (H/p)(W/p), p*p*3]");
  const int64_t B = tokens.size(0);
  return tokens.reshape({B, h, w, p, p, 3}).permute({0, 5, 1, 3, 2, 4}).reshape({B, 3, h * p, w * p});
}

torch::Tensor block_causal_mask(const torch::Tensor& t) {
  const int64_t L = t.size(0);
  auto ar = torch::arange(L, t.options().dtype(torch::kLong));
  auto see = t.unsqueeze(0).eq(t.unsqueeze(1)) | ar.unsqueeze(0).le(ar.unsqueeze(1));
  auto zero = torch::zeros({}, torch::kFloat32), ninf = torch::full({}, -std::numeric_limits<float>::infinity());
  return torch::where(see.cpu(), zero, ninf).to(t.device());
}

namespace {
// The block-causal rule as a packed layout (memory linear in T): runs of rows with one shared t
// (an image's tokens) are "full" splits, everything else "causal" (t grows by one per text row).
nn::PackedLayout prefill_layout(const torch::Tensor& t_row) {
  auto t = t_row.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* v = t.data_ptr<int64_t>();
  const int64_t T = t.numel();
  nn::PackedLayout l;
  l.sample_lens = {T};
  int64_t i = 0;
  while (i < T) {
    int64_t j = i + 1;
    while (j < T && v[j] == v[i]) ++j;
    if (j - i > 1) {
      l.split_lens.push_back(j - i);
      l.modes.push_back("full");
    } else {
      while (j < T && v[j] != v[j - 1] && !(j + 1 < T && v[j + 1] == v[j])) ++j;
      l.split_lens.push_back(j - i);
      l.modes.push_back("causal");
    }
    i = j;
  }
  return l;
}
}  // namespace

// ---- the model -------------------------------------------------------------------------------
NeoChatImpl::NeoChatImpl(const U1Config& c) : cfg(c) {
  language_model = register_module("language_model", Qwen3MoTForCausalLM(c.llm));
  vision_model = register_module("vision_model", NeoVisionModel(c.vision));
  fm_modules = register_module("fm_modules", FmModules(c));
}

std::shared_ptr<NeoChatImpl> NeoChatImpl::load(const U1Config& c, torch::Device device, torch::ScalarType dtype) {
  std::shared_ptr<NeoChatImpl> m;
  {
    io::DefaultDtypeGuard dg(dtype);  // parameters created (and loaded) straight in the compute dtype
    nn::UninitialisedBuild uninitialised;  // the strict load below writes every weight
    m = std::make_shared<NeoChatImpl>(c);
  }
  auto ck = io::Checkpoint::open(c.weights);
  auto rep = io::load_module(*m, ck);
  log_debug("loaded ", rep.tensors, " tensors from ", c.weights, " in ", rep.seconds, " s");
  if (device != torch::Device(torch::kCPU)) m->to(device);
  m->eval();
  return m;
}

torch::Device NeoChatImpl::device() const { return language_model->model->norm->weight.device(); }
// The norm's: the embedding table may be narrower (bf16 under --dtype int8).
torch::ScalarType NeoChatImpl::dtype() const { return language_model->model->norm->weight.scalar_type(); }

torch::Tensor NeoChatImpl::vision_embeds(const torch::Tensor& pixel_values, const std::vector<GridHW>& grids) {
  return vision_model->forward(pixel_values.to(device()), grids);
}

torch::Tensor NeoChatImpl::embed_prefix(const torch::Tensor& ids, const torch::Tensor& image_embeds,
                                        int64_t context_id) {
  auto x = language_model->model->embed(ids.to(device()));
  auto rows = torch::nonzero(ids.eq(context_id)).view(-1).to(device());
  const int64_t n = image_embeds.defined() ? image_embeds.size(0) : 0;
  check(rows.numel() == n, "image tokens", std::to_string(rows.numel()) + " <IMG_CONTEXT> positions for " +
                                              std::to_string(n) + " image embeddings");
  if (n > 0) x = x.index_copy(0, rows, image_embeds.to(x.scalar_type()));
  return x;
}

torch::Tensor NeoChatImpl::append(U1Context& ctx, const torch::Tensor& x, const torch::Tensor& indexes,
                                  const nn::AttentionMask& mask) {
  auto h = language_model->model->forward(x, indexes, TokenRoute::understanding(), &ctx.kv, CacheUse::Append, mask);
  ctx.t = indexes[0].max().item<int64_t>();
  return h;
}

torch::Tensor NeoChatImpl::prefill(U1Context& ctx, const torch::Tensor& x, const torch::Tensor& indexes) {
  check(ctx.kv.length == 0, "prefill", "expects an empty context");
  const auto layout = prefill_layout(indexes[0]);
  return append(ctx, x, indexes, &layout);
}

torch::Tensor NeoChatImpl::decode_step(U1Context& ctx, int64_t token) {
  const auto li = torch::TensorOptions().dtype(torch::kLong).device(device());
  auto x = language_model->model->embed(torch::tensor({token}, li));
  auto idx = torch::tensor({ctx.t + 1, int64_t{0}, int64_t{0}}, li).view({3, 1});
  auto h = append(ctx, x, idx, {});
  return logits(h).to(torch::kFloat32)[0];
}

torch::Tensor NeoChatImpl::append_text(U1Context& ctx, const std::vector<int64_t>& ids) {
  const int64_t T = static_cast<int64_t>(ids.size());
  if (T == 0) return {};
  const auto li = torch::TensorOptions().dtype(torch::kLong).device(device());
  auto x = language_model->model->embed(torch::tensor(ids, li));
  auto t = torch::arange(ctx.t + 1, ctx.t + 1 + T, li);
  auto idx = torch::stack({t, torch::zeros_like(t), torch::zeros_like(t)});
  const auto fo = torch::TensorOptions().dtype(torch::kFloat32).device(device());
  auto mask = torch::cat({torch::zeros({T, ctx.kv.length}, fo),
                          torch::full({T, T}, -std::numeric_limits<float>::infinity(), fo).triu(1)},
                         1);
  return append(ctx, x, idx, mask);
}

torch::Tensor NeoChatImpl::gen_inputs(const torch::Tensor& image, const torch::Tensor& t, double noise_ratio,
                                      std::vector<torch::Tensor>* parts) {
  const int64_t p = cfg.patch_size(), B = image.size(0), H = image.size(2), W = image.size(3);
  const auto dt = dtype();
  auto rows = patchify(image.to(dt), p, /*channel_first=*/true).reshape({B * (H / p) * (W / p), -1});
  auto embeds = fm_modules->vision_model_mot_gen->forward(rows, std::vector<GridHW>(B, {H / p, W / p}));
  // One embedder row for the whole block (the official embeds t expanded to every token: the same
  // row repeated), added as (t_emb + noise_emb) the way the official code brackets it.
  auto tt = t.to(device(), torch::kFloat32).reshape({1});
  auto cond = fm_modules->timestep_embedder->forward(tt);
  torch::Tensor ns;
  if (fm_modules->noise_scale_embedder) {
    ns = fm_modules->noise_scale_embedder->forward(torch::full({1}, static_cast<float>(noise_ratio), tt.options()));
    cond = cond + ns;
  }
  if (parts) *parts = {embeds, fm_modules->timestep_embedder->forward(tt)[0], ns.defined() ? ns[0] : torch::Tensor()};
  return embeds + cond;
}

torch::Tensor NeoChatImpl::predict_x(U1Context& ctx, const torch::Tensor& x, const torch::Tensor& indexes) {
  auto route = all_gen_route(x.size(0), x.device());
  auto h = language_model->model->forward(x, indexes, route, &ctx.kv, CacheUse::Peek, {});
  return fm_modules->fm_head->forward(h);
}

torch::Tensor NeoChatImpl::image_indexes(int64_t token_h, int64_t token_w, int64_t t) const {
  const auto li = torch::TensorOptions().dtype(torch::kLong).device(device());
  auto idx = torch::arange(token_h * token_w, li);
  return torch::stack({torch::full_like(idx, t), idx.div(token_w, "floor"), idx.remainder(token_w)});
}

}  // namespace omni::sensenova_u1
