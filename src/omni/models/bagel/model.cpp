#include "omni/models/bagel/model.h"

#include <cmath>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/generate/context_window.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/nn/uninitialised.h"

namespace omni::bagel {

torch::Tensor patchify_latent(const torch::Tensor& latent, int64_t p) {
  check(latent.dim() == 3 && latent.size(1) % p == 0 && latent.size(2) % p == 0, "patchify_latent",
        "expects [C, h*p, w*p]");
  const int64_t C = latent.size(0), h = latent.size(1) / p, w = latent.size(2) / p;
  // einsum("chpwq->hwpqc")
  return latent.reshape({C, h, p, w, p}).permute({1, 3, 2, 4, 0}).reshape({h * w, p * p * C});
}

torch::Tensor unpatchify_latent(const torch::Tensor& tokens, int64_t h, int64_t w, int64_t p, int64_t channels) {
  check(tokens.dim() == 2 && tokens.size(0) == h * w && tokens.size(1) == p * p * channels, "unpatchify_latent",
        "expects [h*w, p*p*C]");
  // reshape(1, h, w, p, p, c); einsum("nhwpqc->nchpwq")
  return tokens.reshape({1, h, w, p, p, channels}).permute({0, 5, 1, 3, 2, 4}).reshape({1, channels, h * p, w * p});
}

BagelImpl::BagelImpl(const BagelConfig& c) : cfg(c) {
  const int64_t C = c.hidden_size();
  language_model = register_module("language_model", nn::MoTForCausalLM(c.llm));
  vit_model = register_module("vit_model", nn::SiglipVisionModel(c.vit));
  connector = register_module("connector", MLPconnector(c.vit.hidden_size, C, c.connector_act));
  vit_pos_embed = register_module("vit_pos_embed", PositionEmbedding(c.vit_max_num_patch_per_side, C));
  time_embedder = register_module("time_embedder", TimestepEmbedder(C));
  vae2llm = register_module("vae2llm", torch::nn::Linear(c.patch_latent_dim(), C));
  llm2vae = register_module("llm2vae", torch::nn::Linear(C, c.patch_latent_dim()));
  latent_pos_embed = register_module("latent_pos_embed", PositionEmbedding(c.max_latent_size, C));
}

std::shared_ptr<BagelImpl> BagelImpl::load(const BagelConfig& c, const BagelTokenIds& ids, torch::Device device,
                                           torch::ScalarType dtype) {
  std::shared_ptr<BagelImpl> m;
  {
    io::DefaultDtypeGuard dg(dtype);  // parameters created (and loaded) straight in the compute dtype
    nn::UninitialisedBuild uninitialised;  // the strict load below writes every weight
    m = std::make_shared<BagelImpl>(c);
  }
  m->ids = ids;
  auto ck = io::Checkpoint::open(c.weights_file);
  auto rep = io::load_module(*m, ck);
  log_debug("loaded ", rep.tensors, " tensors from ", c.weights_file, " in ", rep.seconds, " s");
  if (device != torch::Device(torch::kCPU)) m->to(device);
  m->eval();
  return m;
}

torch::Tensor BagelImpl::ids_tensor(const std::vector<int64_t>& v) const {
  return torch::tensor(v, torch::kLong).to(device());
}

torch::Tensor BagelImpl::marker_rows(int64_t n_inner, const torch::Tensor& inner) {
  auto markers = language_model->model->embed(ids_tensor({ids.start_of_image, ids.end_of_image}));
  return torch::cat({markers.narrow(0, 0, 1), inner.to(markers.scalar_type()), markers.narrow(0, 1, 1)}, 0);
}

torch::Tensor BagelImpl::add_text_block(nn::KVContext& ctx, const std::vector<int64_t>& ids_with_markers) {
  const int64_t L = static_cast<int64_t>(ids_with_markers.size());
  // an image block takes one position, a text token one each
  generate::check_prompt_fits(ctx.rope + L, cfg.llm.llm.max_position_embeddings, "positions with the images before it");
  auto x = language_model->model->embed(ids_tensor(ids_with_markers));
  auto pos = torch::arange(ctx.rope, ctx.rope + L, long_options());
  auto h = language_model->model->forward_inference(x, pos, ctx, nn::TokenRoute::understanding(), true, true);
  ctx.rope += L;
  return h;
}

torch::Tensor BagelImpl::add_vit_block(nn::KVContext& ctx, const torch::Tensor& image, torch::Tensor* vit_tokens) {
  auto packed = pack_vit_images({image}, cfg.vit.patch_size, cfg.vit_max_num_patch_per_side, cfg.interpolate_pos);
  if (vit_tokens) *vit_tokens = packed.tokens;
  auto emb = embed_vit_tokens(*vit_model, *connector, *vit_pos_embed, packed.tokens.to(device(), dtype()),
                              packed.position_ids,
                              packed.seqlens);
  const int64_t N = emb.size(0);
  auto rows = marker_rows(N, emb);
  auto pos = torch::full({N + 2}, ctx.rope, long_options());
  auto h = language_model->model->forward_inference(rows, pos, ctx, nn::TokenRoute::understanding(), false, true);
  ctx.rope += 1;
  return h;
}

torch::Tensor BagelImpl::latent_position_ids(int64_t h, int64_t w) const {
  return flattened_position_ids(h, w, cfg.max_latent_size, cfg.interpolate_pos);
}

torch::Tensor BagelImpl::embed_latents(const torch::Tensor& x, double t, const torch::Tensor& latent_position_ids) {
  auto temb = time_embedder->forward(
      torch::full({1}, static_cast<float>(t), torch::TensorOptions().dtype(torch::kFloat32).device(device())));
  return vae2llm->forward(x.to(device(), dtype())) + temb + latent_pos_embed->forward(latent_position_ids);
}

torch::Tensor BagelImpl::add_vae_block(nn::KVContext& ctx, const torch::Tensor& latent) {
  const int64_t p = cfg.latent_patch_size;
  const int64_t h = latent.size(1) / p, w = latent.size(2) / p;
  auto tokens = patchify_latent(latent.narrow(1, 0, h * p).narrow(2, 0, w * p), p);
  auto rows = marker_rows(h * w, embed_latents(tokens, 0.0, latent_position_ids(h, w)));
  const int64_t T = rows.size(0);
  auto pos = torch::full({T}, ctx.rope, long_options());
  auto out = language_model->model->forward_inference(rows, pos, ctx, nn::TokenRoute::gen_range(T, 1, T - 1), false,
                                                      true);
  ctx.rope += 1;
  return out;
}

torch::Tensor BagelImpl::flow_query(const torch::Tensor& x_t, double t, const torch::Tensor& latent_position_ids) {
  return marker_rows(x_t.size(0), embed_latents(x_t, t, latent_position_ids));
}

torch::Tensor BagelImpl::flow_velocity(const nn::KVContext& ctx, const torch::Tensor& query) {
  const int64_t T = query.size(0);
  nn::KVContext view = ctx.fork();  // update=false: nothing is written
  auto pos = torch::full({T}, ctx.rope, long_options());
  auto out = language_model->model->forward_inference(query, pos, view, nn::TokenRoute::gen_range(T, 1, T - 1), false,
                                                      false);
  return llm2vae->forward(out.narrow(0, 1, T - 2));
}

torch::Tensor BagelImpl::text_step_logits(nn::KVContext& ctx, int64_t token, int64_t position) {
  auto& lm = *language_model;
  auto x = lm.model->embed(ids_tensor({token}));
  auto h = lm.model->forward_inference(x, torch::full({1}, position, long_options()), ctx,
                                       nn::TokenRoute::understanding(), true, true);
  return lm.logits(h)[0].to(torch::kFloat32);
}

torch::Device BagelImpl::device() const { return vae2llm->weight.device(); }
torch::ScalarType BagelImpl::dtype() const { return vae2llm->weight.scalar_type(); }
torch::TensorOptions BagelImpl::long_options() const { return torch::TensorOptions().dtype(torch::kLong).device(device()); }

}  // namespace omni::bagel
