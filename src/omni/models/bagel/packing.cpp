#include "omni/models/bagel/packing.h"

#include <limits>

#include "omni/core/error.h"
#include "omni/generate/random.h"
#include "omni/models/bagel/image_transform.h"
#include "omni/models/bagel/vit_blocks.h"

namespace omni::bagel {
namespace {

// One entry of the official sequence plan.
struct Item {
  enum Kind { Text, Vit, Vae } kind = Text;
  bool loss = false, enable_cfg = false;
  std::string text;        // Text
  const io::Image* image;  // Vit / Vae
};

bool is_role(const std::string& r) {
  return r == "vit" || r == "vae" || r == "vae+vit" || r == "target" || r == "target+vae+vit";
}

// The conversation as plan items (the rules in packing.h).
std::vector<Item> sequence_plan(const models::TrainExample& ex) {
  size_t n_images = 0;
  bool assistant_image = false;
  for (const auto& t : ex.turns) {
    check(t.role == "user" || t.role == "assistant", "training example", "a turn's role must be user or assistant");
    n_images += t.content.num_images();
    assistant_image = assistant_image || (t.role == "assistant" && t.content.num_images() > 0);
  }
  check(ex.image_roles.empty() || ex.image_roles.size() == n_images, "image_roles",
        std::to_string(ex.image_roles.size()) + " roles for " + std::to_string(n_images) + " image(s)");
  std::vector<Item> plan;
  if (ex.system_prompt && !ex.system_prompt->empty()) plan.push_back({Item::Text, false, false, *ex.system_prompt, nullptr});
  size_t k = 0;
  bool any_loss = false;
  for (size_t ti = 0; ti < ex.turns.size(); ++ti) {
    const auto& t = ex.turns[ti];
    const bool user = t.role == "user";
    for (size_t ci = 0; ci < t.content.chunks.size(); ++ci) {
      const auto& c = t.content.chunks[ci];
      if (!c.is_image()) {
        plan.push_back({Item::Text, !user, user, c.text, nullptr});
        any_loss = any_loss || !user;
        continue;
      }
      const bool last = ti + 1 == ex.turns.size() && ci + 1 == t.content.chunks.size();
      std::string role = !ex.image_roles.empty() ? ex.image_roles[k]
                         : user ? (assistant_image ? "vae+vit" : "vit")
                                : (last ? "target" : "target+vae+vit");
      ++k;
      check(is_role(role), "image_roles",
            "unknown role '" + role + "' (vit, vae, vae+vit, target, target+vae+vit)");
      check(!(user && role.rfind("target", 0) == 0), "image_roles", "a user image cannot be a generation target");
      check(user || role.rfind("target", 0) == 0, "image_roles", "an assistant image is a generation target");
      check(!c.image.empty(), "training example", "image " + std::to_string(k) + " is not decoded");
      if (role.rfind("target", 0) == 0) {
        plan.push_back({Item::Vae, true, false, "", &c.image});
        any_loss = true;
      }
      if (role.find("vae") != std::string::npos && role != "target") plan.push_back({Item::Vae, false, true, "", &c.image});
      if (role.find("vit") != std::string::npos) plan.push_back({Item::Vit, false, true, "", &c.image});
    }
  }
  check(any_loss, "training example", "has no assistant text or image to learn");
  return plan;
}

double uniform(at::Generator* gen) {
  check(gen != nullptr, "BAGEL packing", "CFG dropout needs the run's generator");
  return generate::uniform01(*gen);
}
}  // namespace

models::TrainPlan plan_conversation(const models::TrainExample& ex, const BagelConfig& cfg, const Encode& encode) {
  models::TrainPlan p;
  const int64_t f = cfg.latent_downsample(), vp = cfg.vit.patch_size;
  for (const auto& it : sequence_plan(ex)) {
    if (it.kind == Item::Text) {
      const int64_t n = static_cast<int64_t>(encode(it.text).size());
      p.seq_len += n + 2;
      if (it.loss) p.ce_tokens += n + 1;
      continue;
    }
    const auto& tp = it.kind == Item::Vae ? cfg.vae_transform : cfg.vit_transform;
    const auto [w, h] = transform_size(it.image->width, it.image->height, tp);
    const int64_t tokens = it.kind == Item::Vae ? (h / f) * (w / f) : (h / vp) * (w / vp);
    p.seq_len += tokens + 2;
    if (it.loss) p.gen_tokens += tokens;
  }
  return p;
}

PackedInputs pack_conversations(const std::vector<const models::TrainExample*>& examples, const BagelConfig& cfg,
                                const BagelTokenIds& ids, const Encode& encode, const PackOptions& opts,
                                at::Generator* gen, const std::vector<double>* timesteps) {
  std::vector<int64_t> text_ids, text_idx, pos, vit_idx, vae_idx, mse_idx, ce_idx, labels, vit_seqlens;
  std::vector<double> step_t;
  std::vector<torch::Tensor> vit_tokens, vit_pos, latent_pos, vae_images;
  PackedInputs out;
  PackedBatch& b = out.batch;
  const int64_t f = cfg.latent_downsample(), vp = cfg.vit.patch_size;
  size_t next_t = 0;
  int64_t curr = 0;
  auto add_tokens = [&](std::vector<int64_t>& v, int64_t from, int64_t n) {
    for (int64_t i = 0; i < n; ++i) v.push_back(from + i);
  };
  auto marker = [&](int64_t id) {  // <|vision_start|> / <|vision_end|> around an image's tokens
    text_ids.push_back(id);
    text_idx.push_back(curr++);
  };
  // An item is dropped for CFG with its probability (an image's RoPE id still advances).
  auto dropped = [&](const Item& it, double p) { return it.enable_cfg && p > 0 && uniform(gen) < p; };
  for (const auto* ex : examples) {
    int64_t rope = 0, sample_len = 0;
    for (const auto& it : sequence_plan(*ex)) {
      int64_t split = 0;
      if (it.kind == Item::Text) {
        if (dropped(it, opts.text_cond_dropout_prob)) continue;
        const auto body = encode(it.text);
        const int64_t n = static_cast<int64_t>(body.size()) + 1;  // [bos] + ids
        text_ids.push_back(ids.bos);
        text_ids.insert(text_ids.end(), body.begin(), body.end());
        add_tokens(text_idx, curr, n);
        if (it.loss) {
          add_tokens(ce_idx, curr, n);
          labels.insert(labels.end(), body.begin(), body.end());
          labels.push_back(ids.eos);
        }
        curr += n;
        text_ids.push_back(ids.eos);  // <|im_end|>
        text_idx.push_back(curr++);
        split = n + 1;
        b.attn_modes.push_back("causal");
        add_tokens(pos, rope, split);
        rope += split;
      } else if (it.kind == Item::Vit) {
        if (dropped(it, opts.vit_cond_dropout_prob)) {
          ++rope;
          continue;
        }
        auto img = image_transform(*it.image, cfg.vit_transform);
        const int64_t hp = img.size(1) / vp, wp = img.size(2) / vp, n = hp * wp;
        marker(ids.start_of_image);
        add_tokens(vit_idx, curr, n);
        curr += n;
        vit_tokens.push_back(patchify(img, vp));
        vit_pos.push_back(flattened_position_ids(hp, wp, cfg.vit_max_num_patch_per_side, cfg.interpolate_pos));
        vit_seqlens.push_back(n);
        marker(ids.end_of_image);
        split = n + 2;
        b.attn_modes.push_back("full");
        pos.insert(pos.end(), static_cast<size_t>(split), rope);
        ++rope;
      } else {
        if (dropped(it, opts.vae_cond_dropout_prob)) {
          ++rope;
          continue;
        }
        auto img = image_transform(*it.image, cfg.vae_transform);
        const int64_t h = img.size(1) / f, w = img.size(2) / f, n = h * w;
        marker(ids.start_of_image);
        vae_images.push_back(img);
        latent_pos.push_back(flattened_position_ids(h, w, cfg.max_latent_size, cfg.interpolate_pos));
        b.patchified_vae_latent_shapes.emplace_back(h, w);
        add_tokens(vae_idx, curr, n);
        double t = -std::numeric_limits<double>::infinity();
        if (it.loss) {
          add_tokens(mse_idx, curr, n);
          if (timesteps) {
            check(next_t < timesteps->size(), "BAGEL packing", "fewer injected timesteps than target images");
            t = (*timesteps)[next_t++];
          } else {
            check(gen != nullptr, "BAGEL packing", "drawing timesteps needs the run's generator");
            t = at::empty({1}, torch::kFloat64).normal_(0, 1, *gen).item<double>();
          }
          out.mse_tokens += n;
        }
        step_t.insert(step_t.end(), static_cast<size_t>(n), t);
        curr += n;
        marker(ids.end_of_image);
        split = n + 2;
        b.attn_modes.push_back(it.loss ? "noise" : "full");
        pos.insert(pos.end(), static_cast<size_t>(split), rope);
        if (!it.loss) ++rope;
      }
      b.split_lens.push_back(split);
      sample_len += split;
    }
    b.sample_lens.push_back(sample_len);
  }
  b.sequence_length = curr;
  out.ce_tokens = static_cast<int64_t>(ce_idx.size());
  auto t64 = [](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64); };
  b.packed_text_ids = t64(text_ids);
  b.packed_text_indexes = t64(text_idx);
  b.packed_position_ids = t64(pos);
  if (!vit_tokens.empty()) {
    b.packed_vit_tokens = torch::cat(vit_tokens, 0);
    b.packed_vit_position_ids = torch::cat(vit_pos, 0);
    b.packed_vit_token_indexes = t64(vit_idx);
    b.vit_token_seqlens = vit_seqlens;
  }
  if (!vae_images.empty()) {
    int64_t H = 0, W = 0;
    for (const auto& im : vae_images) {
      H = std::max(H, im.size(1));
      W = std::max(W, im.size(2));
    }
    out.padded_images = torch::zeros({static_cast<int64_t>(vae_images.size()), 3, H, W});
    for (size_t i = 0; i < vae_images.size(); ++i)
      out.padded_images[static_cast<int64_t>(i)].narrow(1, 0, vae_images[i].size(1)).narrow(2, 0, vae_images[i].size(2)).copy_(vae_images[i]);
    b.packed_latent_position_ids = torch::cat(latent_pos, 0);
    b.packed_vae_token_indexes = t64(vae_idx);
    b.packed_timesteps = torch::tensor(step_t, torch::kFloat64).to(torch::kFloat32);
    b.mse_loss_indexes = t64(mse_idx);
  }
  if (!ce_idx.empty()) {
    b.ce_loss_indexes = t64(ce_idx);
    b.packed_label_ids = t64(labels);
  }
  return out;
}

}  // namespace omni::bagel
