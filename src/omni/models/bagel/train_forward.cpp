// BAGEL's training forward (modeling/bagel/bagel.py Bagel.forward, train mode) on a packed batch.
#include <limits>

#include "omni/core/error.h"
#include "omni/models/bagel/model.h"
#include "omni/nn/sequence_parallel.h"

namespace omni::bagel {

torch::Tensor packed_attention_mask(const PackedBatch& b) {
  const int64_t T = b.sequence_length;
  check(b.split_lens.size() == b.attn_modes.size(), "packed batch", "split_lens and attn_modes differ in length");
  auto allow = torch::zeros({T, T}, torch::kBool);
  size_t split = 0;
  int64_t start = 0;
  for (int64_t len : b.sample_lens) {
    if (start >= T) break;  // the flex padding sample lies beyond the sequence
    check(start + len <= T, "packed batch", "sample_lens overrun sequence_length");
    auto m = allow.narrow(0, start, len).narrow(1, start, len);
    // per sample: causal / full splits, then the noise splits hidden from everyone else
    std::vector<std::pair<int64_t, int64_t>> noise;
    int64_t c = 0;
    while (c < len) {
      check(split < b.split_lens.size(), "packed batch", "split_lens do not cover sample_lens");
      const int64_t s = b.split_lens[split];
      const std::string& mode = b.attn_modes[split];
      check(mode == "causal" || mode == "full" || mode == "noise", "packed batch",
            "attn mode must be causal, full or noise (got \"" + mode + "\")");
      auto block = m.narrow(0, c, s).narrow(1, c, s);
      block.copy_(mode == "causal" ? torch::ones({s, s}, torch::kBool).tril() : torch::ones({s, s}, torch::kBool));
      if (c > 0) m.narrow(0, c, s).narrow(1, 0, c).fill_(true);
      if (mode == "noise") noise.emplace_back(c, s);
      c += s;
      ++split;
    }
    check(c == len, "packed batch", "split_lens do not add up to a sample length");
    for (auto [c0, s] : noise) {
      m.narrow(1, c0, s).fill_(false);
      m.narrow(0, c0, s).narrow(1, c0, s).fill_(true);
    }
    start += len;
  }
  check(start >= T, "packed batch", "sample_lens cover less than sequence_length");
  return torch::zeros({T, T}, torch::kFloat32).masked_fill_(~allow, -std::numeric_limits<float>::infinity());
}

void BagelImpl::use_training_position_tables() {
  torch::NoGradGuard ng;
  vit_pos_embed->reset_sincos();
  latent_pos_embed->reset_sincos();
  vit_pos_embed->pos_embed.set_requires_grad(false);
  latent_pos_embed->pos_embed.set_requires_grad(false);
}

TrainOutputs BagelImpl::forward_train(const PackedBatch& b, const torch::Tensor& noise_in, at::Generator* gen) {
  const int64_t T = b.sequence_length, C = cfg.hidden_size();
  auto& lm = *language_model;
  auto text_emb = lm.model->embed(b.packed_text_ids);
  auto seq = torch::zeros({T, C}, text_emb.options());
  seq = seq.index_copy(0, b.packed_text_indexes, text_emb);
  torch::Tensor und_idx = b.packed_text_indexes;

  if (b.packed_vit_tokens.defined() && b.packed_vit_tokens.numel() > 0) {
    auto vit = embed_vit_tokens(*vit_model, *connector, *vit_pos_embed, b.packed_vit_tokens, b.packed_vit_position_ids,
                                b.vit_token_seqlens);
    seq = seq.index_copy(0, b.packed_vit_token_indexes, vit);
    und_idx = torch::cat({und_idx, b.packed_vit_token_indexes});
  }

  TrainOutputs out;
  torch::Tensor clean, noise, t;
  const bool has_vae = b.packed_vae_token_indexes.defined() && b.packed_vae_token_indexes.numel() > 0;
  if (has_vae) {
    const int64_t p = cfg.latent_patch_size;
    check(b.padded_latent.size(0) == static_cast<int64_t>(b.patchified_vae_latent_shapes.size()), "packed batch",
          "one (h, w) shape per padded latent");
    std::vector<torch::Tensor> parts;
    for (size_t i = 0; i < b.patchified_vae_latent_shapes.size(); ++i) {
      auto [h, w] = b.patchified_vae_latent_shapes[i];
      parts.push_back(patchify_latent(b.padded_latent[i].narrow(1, 0, h * p).narrow(2, 0, w * p), p));
    }
    clean = torch::cat(parts, 0);
    if (noise_in.defined()) {
      check(noise_in.sizes() == clean.sizes(), "flow noise",
            "shape " + std::string(c10::str(noise_in.sizes())) + ", expected " + std::string(c10::str(clean.sizes())));
      noise = noise_in.to(clean.scalar_type());
    } else {
      check(gen != nullptr, "forward_train", "drawing the flow noise needs the run's generator");
      noise = torch::randn(clean.sizes(), *gen, clean.options());
    }
    const double s = cfg.timestep_shift;
    t = torch::sigmoid(b.packed_timesteps.to(torch::kFloat32));
    t = s * t / (1 + (s - 1) * t);
    auto x_t = (1 - t.unsqueeze(1)) * clean + t.unsqueeze(1) * noise;
    auto emb = vae2llm->forward(x_t) + time_embedder->forward(t) + latent_pos_embed->forward(b.packed_latent_position_ids);
    seq = seq.index_copy(0, b.packed_vae_token_indexes, emb);
  }

  nn::TokenRoute route;
  route.und = und_idx;
  route.gen = has_vae ? b.packed_vae_token_indexes : torch::empty({0}, torch::kLong);
  // Split by split against the keys each may see (the flex-attention path): no [T, T] mask.
  const nn::PackedLayout layout{b.sample_lens, b.split_lens, b.attn_modes};
  auto hidden = lm.model->forward_train(seq, b.packed_position_ids, route, &layout);

  // The loss rows (under sequence parallelism, the ones this process owns), in their order.
  nn::SequenceParallel* sp = lm.model->sequence_parallel;
  auto mine = [&](const torch::Tensor& rows) {
    return sp ? torch::nonzero(sp->owned(rows, sp->split(T))).view(-1) : torch::Tensor();
  };
  auto pick = [](const torch::Tensor& x, const torch::Tensor& which) { return which.defined() ? x.index_select(0, which) : x; };
  if (has_vae && b.mse_loss_indexes.defined() && b.mse_loss_indexes.numel() > 0) {
    auto target = (noise - clean).index_select(0, torch::nonzero(t > 0).view(-1));
    check(b.mse_loss_indexes.numel() == target.size(0), "packed batch",
          "mse_loss_indexes and the noisy latent tokens differ in count");
    const auto which = mine(b.mse_loss_indexes);
    auto pred = llm2vae->forward(hidden.index_select(0, pick(b.mse_loss_indexes, which)));
    out.mse = (pred - pick(target, which)).pow(2);
  }
  if (b.ce_loss_indexes.defined() && b.ce_loss_indexes.numel() > 0) {
    const auto which = mine(b.ce_loss_indexes);
    auto logits = lm.lm_head->forward(hidden.index_select(0, pick(b.ce_loss_indexes, which)));
    out.ce = torch::nn::functional::cross_entropy(logits, pick(b.packed_label_ids, which),
                                                  torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  }
  return out;
}

}  // namespace omni::bagel
