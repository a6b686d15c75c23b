#include "omni/models/bagel/vit_blocks.h"

#include <cmath>

#include "omni/core/error.h"
#include "omni/nn/linear.h"

namespace omni::bagel {

MLPconnectorImpl::MLPconnectorImpl(int64_t in_dim, int64_t out_dim, const std::string& hidden_act) : act(hidden_act) {
  nn::check_hf_activation(act, "connector_act");
  fc1 = register_module("fc1", nn::tower_linear(in_dim, out_dim));
  fc2 = register_module("fc2", nn::tower_linear(out_dim, out_dim));
}

torch::Tensor MLPconnectorImpl::forward(const torch::Tensor& x) {
  return nn::linear_rows(fc2, nn::hf_activation(act, nn::linear_rows(fc1, x)));
}

torch::Tensor patchify(const torch::Tensor& img, int64_t p) {
  check(p > 0, "patchify", "patch size must be > 0");
  check(img.dim() == 3, "patchify", "expects an image [C, H, W]");
  const int64_t C = img.size(0), H = img.size(1), W = img.size(2);
  check(H % p == 0 && W % p == 0, "patchify",
        "image " + std::to_string(H) + "x" + std::to_string(W) + " (HxW) is not a multiple of the patch size " +
            std::to_string(p));
  // [C, h, p, w, q] -> [h, w, p, q, C] -> [h*w, p*q*C]
  return img.reshape({C, H / p, p, W / p, p}).permute({1, 3, 2, 4, 0}).reshape({-1, p * p * C});
}

torch::Tensor flattened_position_ids_extrapolate(int64_t h, int64_t w, int64_t M) {
  check(h >= 0 && w >= 0 && M > 0, "vit position ids", "patch counts must be >= 0 and max_per_side > 0");
  check(h <= M && w <= M, "vit position ids",
        "image of " + std::to_string(h) + "x" + std::to_string(w) + " patches exceeds vit_max_num_patch_per_side " +
            std::to_string(M));
  auto rows = torch::arange(h, torch::kInt64).unsqueeze(1) * M;
  auto cols = torch::arange(w, torch::kInt64).unsqueeze(0);
  return (rows + cols).flatten();
}

torch::Tensor flattened_position_ids_interpolate(int64_t h, int64_t w, int64_t M) {
  check(h > 0 && w > 0 && M > 0, "vit position ids", "patch counts and max_per_side must be > 0");
  auto boundaries = torch::arange(1.0 / M, 1.0, 1.0 / M);  // float32, as torch.arange with Python floats
  auto frac_h = torch::arange(0.0, 1.0 - 1e-6, 1.0 / h);
  auto frac_w = torch::arange(0.0, 1.0 - 1e-6, 1.0 / w);
  auto bh = torch::bucketize(frac_h, boundaries, /*out_int32=*/false, /*right=*/true);
  auto bw = torch::bucketize(frac_w, boundaries, false, true);
  return (bh.unsqueeze(1) * M + bw.unsqueeze(0)).flatten();
}

torch::Tensor flattened_position_ids(int64_t h, int64_t w, int64_t M, bool interpolate) {
  return interpolate ? flattened_position_ids_interpolate(h, w, M) : flattened_position_ids_extrapolate(h, w, M);
}

torch::Tensor sincos_pos_embed_2d(int64_t D, int64_t G) {
  check(D > 0 && D % 4 == 0, "sin-cos position embedding",
        "embed_dim must be a positive multiple of 4 (got " + std::to_string(D) + ")");
  check(G > 0, "sin-cos position embedding", "grid size must be > 0");
  const int64_t q = D / 4;  // frequencies per axis
  std::vector<double> omega(q);
  for (int64_t k = 0; k < q; ++k) omega[k] = 1.0 / std::pow(10000.0, static_cast<double>(k) / static_cast<double>(q));
  // 1-D table per coordinate value: [sin(x w_0..), cos(x w_0..)] (D/2 values).
  auto one_d = torch::empty({G, 2 * q}, torch::kFloat32);
  auto a = one_d.accessor<float, 2>();
  for (int64_t x = 0; x < G; ++x)
    for (int64_t k = 0; k < q; ++k) {
      const double v = static_cast<double>(x) * omega[k];
      a[x][k] = static_cast<float>(std::sin(v));
      a[x][q + k] = static_cast<float>(std::cos(v));
    }
  // Row r*G + c: [table(c), table(r)].
  auto col_part = one_d.unsqueeze(0).expand({G, G, 2 * q});  // [r, c] -> table(c)
  auto row_part = one_d.unsqueeze(1).expand({G, G, 2 * q});  // [r, c] -> table(r)
  return torch::cat({col_part, row_part}, -1).reshape({G * G, D}).contiguous();
}

PositionEmbeddingImpl::PositionEmbeddingImpl(int64_t G, int64_t D) : max_num_patch_per_side(G), hidden_size(D) {
  pos_embed = register_parameter("pos_embed", sincos_pos_embed_2d(D, G), /*requires_grad=*/false);
}

void PositionEmbeddingImpl::reset_sincos() {
  torch::NoGradGuard ng;
  pos_embed.copy_(sincos_pos_embed_2d(hidden_size, max_num_patch_per_side));
}

torch::Tensor PositionEmbeddingImpl::forward(const torch::Tensor& ids) {
  check(ids.dim() == 1, "vit_pos_embed", "expects position ids [N]");
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    check(lo >= 0 && hi < pos_embed.size(0), "vit_pos_embed",
          "position id out of range [0, " + std::to_string(pos_embed.size(0)) + "): " + std::to_string(lo) + ".." +
              std::to_string(hi));
  }
  return pos_embed.index_select(0, ids.to(pos_embed.device(), torch::kLong));
}

PackedVitImages pack_vit_images(const std::vector<torch::Tensor>& images, int64_t patch, int64_t M,
                                bool interpolate) {
  PackedVitImages out;
  std::vector<torch::Tensor> toks, ids;
  for (const auto& img : images) {
    auto t = patchify(img, patch);
    toks.push_back(t);
    ids.push_back(flattened_position_ids(img.size(1) / patch, img.size(2) / patch, M, interpolate));
    out.seqlens.push_back(t.size(0));
  }
  check(!toks.empty(), "pack_vit_images", "no images");
  out.tokens = torch::cat(toks, 0);
  out.position_ids = torch::cat(ids, 0);
  return out;
}

torch::Tensor embed_vit_tokens(nn::SiglipVisionModelImpl& vit, MLPconnectorImpl& connector,
                               PositionEmbeddingImpl& vit_pos_embed, const torch::Tensor& tokens,
                               const torch::Tensor& ids, const std::vector<int64_t>& seqlens) {
  auto h = vit.forward_seqlens(tokens, ids, seqlens);
  return connector.forward(h) + vit_pos_embed.forward(ids);
}

}  // namespace omni::bagel
