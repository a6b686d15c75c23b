#include "omni/models/janus/model.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/progress.h"
#include "omni/io/module_loader_torch.h"
#include "omni/generate/cfg.h"
#include "omni/generate/sampler.h"
#include "omni/nn/linear.h"
#include "omni/nn/sequence_parallel.h"
#include "omni/nn/uninitialised.h"

namespace omni::models::janus {

using torch::indexing::Slice;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace

// ---- modules ---------------------------------------------------------------------------------
CLIPVisionTowerImpl::CLIPVisionTowerImpl(const VisionConfig& c) : cfg(c) {
  vision_tower = register_module("vision_tower", nn::VisionTransformer(c.vit));
}

torch::Tensor CLIPVisionTowerImpl::forward(const torch::Tensor& pixels) {
  torch::Tensor x = pixels;
  if (cfg.pixel_mean && cfg.pixel_std) {  // torchvision Normalize (absent from Janus configs)
    auto o = pixels.options();
    auto mean = torch::tensor(std::vector<double>(cfg.pixel_mean->begin(), cfg.pixel_mean->end()), o).view({1, 3, 1, 1});
    auto std_ = torch::tensor(std::vector<double>(cfg.pixel_std->begin(), cfg.pixel_std->end()), o).view({1, 3, 1, 1});
    x = (x - mean) / std_;
  }
  return vision_tower->forward(x);  // select_feature "same": all patch tokens
}

VisionHeadImpl::VisionHeadImpl(const GenHeadConfig& c) {
  output_mlp_projector = register_module("output_mlp_projector", nn::tower_linear(c.n_embed, c.image_token_embed));
  vision_head = register_module("vision_head", nn::tower_linear(c.image_token_embed, c.image_token_size));
}

torch::Tensor VisionHeadImpl::forward(const torch::Tensor& x) {
  return nn::linear_rows(vision_head, torch::gelu(nn::linear_rows(output_mlp_projector, x)));
}

MultiModalityCausalLMImpl::MultiModalityCausalLMImpl(const JanusConfig& c) {
  vision_model = register_module("vision_model", CLIPVisionTower(c.vision));
  aligner = register_module("aligner", nn::MlpProjector(c.aligner.type, c.aligner.input_dim, c.aligner.n_embed, c.aligner.depth));
  gen_vision_model = register_module("gen_vision_model", nn::VQModel(c.gen_vision.vq));
  gen_aligner = register_module(
      "gen_aligner", nn::MlpProjector(c.gen_aligner.type, c.gen_aligner.input_dim, c.gen_aligner.n_embed, c.gen_aligner.depth));
  gen_head = register_module("gen_head", VisionHead(c.gen_head));
  gen_embed = register_module("gen_embed", torch::nn::Embedding(c.gen_vision.image_token_size, c.gen_vision.n_embed));
  language_model = register_module("language_model", nn::LlamaForCausalLM(c.language));
}

// ---- loading ---------------------------------------------------------------------------------
JanusModel::JanusModel(const JanusConfig& cfg) : cfg_(cfg), net_(cfg) { net_->eval(); }

io::Checkpoint JanusModel::weights_checkpoint(const std::string& dir) {
  // A single model.safetensors wins (a folder may hold other .safetensors, e.g. traces);
  // otherwise whatever Checkpoint::open finds (shard index, .bin).
  const std::string single = dir + "/model.safetensors";
  return std::filesystem::is_regular_file(single) ? io::Checkpoint::open(single) : io::Checkpoint::open(dir);
}

std::unique_ptr<JanusModel> JanusModel::load(const std::string& dir, const LoadOptions& opts) {
  auto cfg = JanusConfig::from_file(dir + "/config.json");
  check(c10::isFloatingType(opts.dtype), "janus load", "dtype must be a floating type");
  std::unique_ptr<JanusModel> m;
  {
    io::DefaultDtypeGuard dg(opts.dtype);  // load_module converts float tensors to the module's dtype
    nn::UninitialisedBuild uninitialised;  // the strict load below writes every weight
    m = std::make_unique<JanusModel>(cfg);
  }
  m->load_weights(weights_checkpoint(dir));
  if (opts.device != torch::Device(torch::kCPU)) m->net_->to(opts.device);
  return m;
}

void JanusModel::load_weights(const io::Checkpoint& ckpt) {
  const int64_t depth = cfg_.vision.vit.depth;
  const std::string tower = "vision_model.vision_tower.";
  io::LoadOptions lo;
  lo.prefix = "";
  lo.ignore_unused = [tower, depth](const std::string& name) {
    if (!starts_with(name, tower)) return false;
    const std::string rest = name.substr(tower.size());
    // ignore_head=True: the MAP pooling head (and a fc_norm/head if any) never runs.
    if (starts_with(rest, "attn_pool.") || starts_with(rest, "fc_norm.") || starts_with(rest, "head.")) return true;
    // select_layer < -1 builds fewer blocks than the checkpoint has.
    if (starts_with(rest, "blocks.")) {
      const auto dot = rest.find('.', 7);
      try {
        return std::stoll(rest.substr(7, dot - 7)) >= depth;
      } catch (...) {
        return false;
      }
    }
    return false;
  };
  lo.only_check_prefix = false;
  auto rep = io::load_module(*net_, ckpt, lo);
  log_info("janus: loaded " + std::to_string(rep.tensors) + " tensors (" + std::to_string(rep.ignored) +
           " unused head tensors ignored) from " + ckpt.label());
}

void JanusModel::to(torch::Device device, torch::ScalarType dtype) { net_->to(device, dtype); }

torch::Device JanusModel::device() const { return net_->language_model->model->norm->weight.device(); }
torch::ScalarType JanusModel::dtype() const {
  return net_->language_model->model->norm->weight.scalar_type();  // the embedding table may be narrower
}

// ---- understanding ---------------------------------------------------------------------------
torch::Tensor JanusModel::vision_features(const torch::Tensor& pixels) {
  return net_->vision_model->forward(pixels.to(device(), dtype()));
}

torch::Tensor JanusModel::align(const torch::Tensor& features) {
  return net_->aligner->forward(features);
}

torch::Tensor JanusModel::prepare_inputs_embeds(const torch::Tensor& input_ids, const torch::Tensor& pixel_values,
                                                const torch::Tensor& images_seq_mask,
                                                const torch::Tensor& images_emb_mask) {
  check(input_ids.dim() == 2, "input_ids", "expected [B, T]");
  check(pixel_values.dim() == 5, "pixel_values", "expected [B, n_images, 3, H, W]");
  check(images_seq_mask.sizes() == input_ids.sizes(), "images_seq_mask", "must have the shape of input_ids");
  const int64_t B = pixel_values.size(0), n = pixel_values.size(1);
  const auto dev = device();
  auto feats = vision_features(pixel_values.flatten(0, 1));
  trace("vision_features", feats);
  auto img = align(feats);  // [B*n, N, D]
  trace("aligned_image_embeds", img);
  const int64_t N = img.size(1), D = img.size(2);
  img = img.reshape({B, n * N, D});
  auto emb_mask = images_emb_mask.to(dev).to(torch::kBool).reshape({B, n * N});
  auto seq_mask = images_seq_mask.to(dev).to(torch::kBool);

  auto ids = input_ids.to(dev).to(torch::kInt64).clone();
  ids.masked_fill_(ids < 0, 0);
  auto embeds = net_->language_model->model->embed(ids);
  const int64_t n_seq = seq_mask.sum().item<int64_t>(), n_emb = emb_mask.sum().item<int64_t>();
  check(n_seq == n_emb, "prepare_inputs_embeds",
        "images_seq_mask selects " + std::to_string(n_seq) + " positions but images_emb_mask " + std::to_string(n_emb) +
            " image embeddings");
  embeds.index_put_({seq_mask}, img.index({emb_mask}));
  trace("inputs_embeds", embeds);
  return embeds;
}

torch::Tensor JanusModel::lm_logits(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask) {
  auto& lm = net_->language_model;
  return lm->logits(lm->model->forward(inputs_embeds.to(device(), dtype()), nullptr, {}, attention_mask));
}

namespace {
generate::SamplerOptions sampler_options(const TextGenOptions& o) {
  generate::SamplerOptions s;
  s.temperature = o.temperature;
  s.top_k = o.top_k;
  s.top_p = o.top_p;
  return s;
}
}  // namespace

TextGenResult JanusModel::understand(const torch::Tensor& inputs_embeds, const TextGenOptions& o,
                                     const torch::Tensor& attention_mask) {
  check(inputs_embeds.dim() == 3 && inputs_embeds.size(0) == 1, "understand", "inputs_embeds must be [1, T, D]");
  check(o.max_new_tokens >= 1, "max_new_tokens", "must be >= 1");
  auto& lm = net_->language_model;
  const auto dev = device();
  const int64_t T = inputs_embeds.size(1);
  TextGenResult r;
  r.prompt_tokens = T;
  auto cache = lm->model->make_cache(1, T + o.max_new_tokens);

  // With an attention mask, positions follow HF: cumsum(mask) - 1 (1 where masked).
  torch::Tensor full_mask;
  if (attention_mask.defined()) {
    check(attention_mask.dim() == 2 && attention_mask.size(0) == 1 && attention_mask.size(1) == T, "attention_mask",
          "expected [1, T]");
    full_mask = torch::ones({1, T + o.max_new_tokens}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
    full_mask.narrow(1, 0, T).copy_(attention_mask);
  }
  auto positions_for = [&](int64_t len, int64_t t) -> torch::Tensor {
    if (!full_mask.defined()) return {};
    auto m = full_mask.narrow(1, 0, len);
    auto pos = m.cumsum(-1) - 1;
    pos.masked_fill_(m == 0, 1);
    return pos.narrow(1, len - t, t);
  };
  auto mask_for = [&](int64_t len) -> torch::Tensor {
    return full_mask.defined() ? full_mask.narrow(1, 0, len) : torch::Tensor();
  };

  const auto sampler = sampler_options(o);
  if (o.keep_step_logits) r.step_logits = torch::empty({o.max_new_tokens, lm->cfg.vocab_size}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));

  auto t0 = std::chrono::steady_clock::now();
  auto h = lm->model->forward(inputs_embeds.to(dev, dtype()), &cache, positions_for(T, T), mask_for(T));
  auto logits = lm->logits(h.select(1, T - 1)).to(torch::kFloat32);  // [1, V]
  trace("logits_last", logits);  // [1, V]: the last prefill position
  r.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  r.stop_reason = "max_new_tokens";
  for (int step = 0; step < o.max_new_tokens; ++step) {
    if (o.keep_step_logits) r.step_logits[step].copy_(logits[0]);
    auto next = generate::sample_next(logits, sampler, o.generator);  // [1]
    const int64_t tok = next.item<int64_t>();  // the one host sync per token (EOS / streaming)
    r.tokens.push_back(tok);
    if (o.on_token && !o.on_token(tok)) {
      r.stop_reason = "callback";
      break;
    }
    if (std::find(o.eos_token_ids.begin(), o.eos_token_ids.end(), tok) != o.eos_token_ids.end()) {
      r.stop_reason = "eos";
      break;
    }
    if (step + 1 == o.max_new_tokens) break;
    const int64_t len = cache.length + 1;
    h = lm->model->forward(lm->model->embed(next.view({1, 1})), &cache, positions_for(len, 1), mask_for(len));
    logits = lm->logits(h.select(1, 0)).to(torch::kFloat32);
  }
  r.logits_last = logits[0];
  if (o.keep_step_logits) r.step_logits = r.step_logits.narrow(0, 0, static_cast<int64_t>(r.tokens.size()));
  r.decode_seconds = seconds_since(t0);
  return r;
}

// ---- text-to-image ---------------------------------------------------------------------------
torch::Tensor JanusModel::cfg_rows(const std::vector<int64_t>& prompt_ids, int64_t pad_id, int64_t P) {
  const int64_t L = static_cast<int64_t>(prompt_ids.size());
  check(L >= 2, "prompt_ids", "need at least BOS and <begin_of_image>");
  check(P >= 1, "parallel_size", "must be >= 1");
  auto ids = torch::tensor(prompt_ids, torch::kInt64).to(torch::kInt32);
  auto rows = ids.view({1, L}).repeat({2 * P, 1}).contiguous();
  for (int64_t i = 1; i < 2 * P; i += 2) rows[i].narrow(0, 1, L - 2).fill_(pad_id);
  return rows;
}

torch::Tensor JanusModel::gen_image_embeds(const torch::Tensor& ids) {
  return net_->gen_aligner->forward(net_->gen_embed->forward(ids.to(torch::kInt64)));
}

ImageGenResult JanusModel::generate_image_tokens(const std::vector<int64_t>& prompt_ids, int64_t pad_id,
                                                 const ImageGenOptions& o) {
  const int64_t f = cfg_.gen_vision.vq.downsample_factor();
  check(o.image_size > 0 && o.image_size % f == 0, "image_size",
        "must be a positive multiple of the VQ downsample factor " + std::to_string(f));
  const int64_t P = o.parallel_size, grid = o.image_size / f, N = grid * grid;
  const auto dev = device();
  auto& lm = net_->language_model;
  ImageGenResult r;
  r.grid = grid;
  r.cfg_input_tokens = cfg_rows(prompt_ids, pad_id, P);
  const int64_t L = r.cfg_input_tokens.size(1);
  torch::Tensor forced;
  if (o.forced_tokens.defined()) {
    check(o.forced_tokens.dim() == 2 && o.forced_tokens.size(0) == P && o.forced_tokens.size(1) == N, "forced_tokens",
          "expected [" + std::to_string(P) + ", " + std::to_string(N) + "]");
    forced = o.forced_tokens.to(dev).to(torch::kInt64);
  }

  auto t0 = std::chrono::steady_clock::now();
  auto cache = lm->model->make_cache(2 * P, L + N);  // first: it refuses a batch that cannot fit
  auto embeds = lm->model->embed(r.cfg_input_tokens.to(dev).to(torch::kInt64));  // [2P, L, D]
  r.tokens = torch::zeros({P, N}, torch::TensorOptions().dtype(torch::kInt32).device(dev));
  generate::SamplerOptions sampler;  // temperature only (<= 0: argmax of the guided logits)
  sampler.temperature = o.temperature;
  std::unique_ptr<Progress> bar;
  if (o.progress) bar = std::make_unique<Progress>("image tokens", N, "tok");
  const double w = o.cfg_weight;
  for (int64_t i = 0; i < N; ++i) {
    auto h = lm->model->forward(embeds, &cache);
    auto logits = net_->gen_head->forward(h.select(1, h.size(1) - 1));  // [2P, V]
    auto cond = logits.index({Slice(0, torch::indexing::None, 2)});
    auto uncond = logits.index({Slice(1, torch::indexing::None, 2)});
    auto guided = generate::cfg_combine(cond, uncond, w);
    if (o.on_step) o.on_step(i, logits, guided);
    // [P, 1] int64: softmax(guided / temperature) + multinomial, as generation_inference.py
    auto next = forced.defined() ? forced.narrow(1, i, 1)
                                 : generate::sample_next(guided, sampler, o.generator).unsqueeze(1);
    r.tokens.narrow(1, i, 1).copy_(next);
    if (bar) bar->tick();
    if (i + 1 == N) break;  // the official loop embeds the last token but never uses it
    auto pair = next.expand({P, 2}).reshape({2 * P});  // [t0, t0, t1, t1, ...]
    embeds = gen_image_embeds(pair).unsqueeze(1);
  }
  if (bar) bar->finish();
  r.seconds = seconds_since(t0);
  trace("generated_tokens", r.tokens);
  return r;
}

torch::Tensor JanusModel::decode_image_tokens(const torch::Tensor& tokens, int64_t grid) {
  check(tokens.dim() == 2 && tokens.size(1) == grid * grid, "decode_image_tokens", "tokens must be [P, grid*grid]");
  auto dec = decode_code(tokens, {tokens.size(0), cfg_.gen_vision.vq.codebook_embed_dim, grid, grid});
  trace("decoded", dec);
  return dec;
}

torch::Tensor JanusModel::to_uint8_images(const torch::Tensor& decoded) {
  auto x = decoded.to(torch::kFloat32).to(torch::kCPU).permute({0, 2, 3, 1});
  x = ((x + 1) / 2 * 255).clamp(0, 255);
  return x.to(torch::kUInt8).contiguous();  // float -> uint8 truncates, as numpy's assignment
}

// ---- VQ --------------------------------------------------------------------------------------
nn::VQModelImpl::Encoded JanusModel::vq_encode(const torch::Tensor& pixels) {
  return net_->gen_vision_model->encode(pixels.to(device(), dtype()));
}

torch::Tensor JanusModel::decode_code(const torch::Tensor& codes, const std::vector<int64_t>& shape) {
  return net_->gen_vision_model->decode_code(codes.to(device()), shape);
}

// ---- losses ----------------------------------------------------------------------------------
LossResult JanusModel::text_loss(const torch::Tensor& inputs_embeds, const torch::Tensor& labels,
                                 const torch::Tensor& attention_mask) {
  auto& lm = net_->language_model;
  const auto dev = device();
  LossResult r;
  auto h = lm->model->forward(inputs_embeds.to(dev), nullptr, {}, attention_mask);
  // Position t predicts label t + 1: positions [from, to), all but the last (under sequence
  // parallelism, the ones this process owns).
  const int64_t T = h.size(1);
  int64_t from = 0, to = T - 1;
  torch::Tensor shift_logits;
  if (nn::SequenceParallel* sp = lm->model->sequence_parallel) {
    const auto s = sp->split(T);
    from = std::min(s.begin, to);
    to = std::max(from, std::min(s.end, to));
    r.logits = lm->logits(h.narrow(1, from, to - from)).to(torch::kFloat32);  // [B, to - from, V]
    shift_logits = r.logits.reshape({-1, r.logits.size(-1)});
  } else {
    r.logits = lm->logits(h).to(torch::kFloat32);  // [B, T, V]
    shift_logits = r.logits.narrow(1, 0, T - 1).reshape({-1, r.logits.size(-1)});
  }
  auto shift_labels = labels.to(dev).to(torch::kInt64).narrow(1, from + 1, to - from).reshape({-1});
  namespace F = torch::nn::functional;
  auto ce = F::cross_entropy(shift_logits, shift_labels, F::CrossEntropyFuncOptions().reduction(torch::kNone).ignore_index(-100));
  r.token_ce = ce.index({shift_labels != -100});
  r.loss = F::cross_entropy(shift_logits, shift_labels, F::CrossEntropyFuncOptions().ignore_index(-100));
  return r;
}

LossResult JanusModel::image_gen_loss(const torch::Tensor& prompt_ids, const torch::Tensor& image_codes) {
  auto& lm = net_->language_model;
  const auto dev = device();
  check(prompt_ids.dim() == 2 && image_codes.dim() == 2 && prompt_ids.size(0) == image_codes.size(0), "image_gen_loss",
        "expected prompt_ids [B, L] and image_codes [B, N]");
  const int64_t L = prompt_ids.size(1), N = image_codes.size(1);
  auto codes = image_codes.to(dev).to(torch::kInt64);
  auto e = torch::cat({lm->model->embed(prompt_ids.to(dev).to(torch::kInt64)), gen_image_embeds(codes)}, 1);
  auto h = lm->model->forward(e);
  // Position L - 1 + j predicts code j: codes [from, to) (under sequence parallelism the ones
  // whose position this process owns).
  int64_t from = 0, to = N;
  if (nn::SequenceParallel* sp = lm->model->sequence_parallel) {
    const auto s = sp->split(L + N);
    from = std::clamp<int64_t>(s.begin - (L - 1), 0, N);
    to = std::clamp<int64_t>(s.end - (L - 1), from, N);
  }
  LossResult r;
  r.logits = net_->gen_head->forward(h.narrow(1, L - 1 + from, to - from)).to(torch::kFloat32);  // [B, to - from, V]
  const int64_t V = r.logits.size(-1);
  namespace F = torch::nn::functional;
  auto flat = r.logits.reshape({-1, V});
  r.token_ce = F::cross_entropy(flat, codes.narrow(1, from, to - from).reshape({-1}),
                                F::CrossEntropyFuncOptions().reduction(torch::kNone));
  r.loss = r.token_ce.mean();
  return r;
}

}  // namespace omni::models::janus
