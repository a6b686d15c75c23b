#include "omni/models/sensenova_u1/training.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "omni/core/error.h"
#include "omni/nn/sequence_parallel.h"

namespace omni::sensenova_u1 {
namespace {
constexpr int64_t kIgnore = -100;
constexpr int64_t kPackTokens = 28672;  // the official seq_len (its multi-image pixel budget)
constexpr int64_t kMinPixels = 256 * 256, kMaxPixelsUnd = 2048 * 2048, kMaxPixelsGen = 512 * 512;

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

struct Builder {
  const U1Config& cfg;
  const text::Tokenizer& tok;
  const SpecialIds& sid;
  TrainSequence s;
  int64_t t = -1;  // t of the last token

  void push(int64_t id, bool supervised, int64_t tt, int64_t run = 0, int64_t hh = 0, int64_t ww = 0, bool hide = false) {
    s.ids.push_back(id);
    s.labels.push_back(supervised ? id : kIgnore);
    s.t.push_back(tt);
    s.doc.push_back(0);
    s.h.push_back(hh);
    s.w.push_back(ww);
    s.image_of.push_back(run);
    s.hidden.push_back(hide ? 1 : 0);
  }
  // One string the official code tokenizes at once (a turn, an assistant opening or body): its
  // text with each image as <img> + <IMG_CONTEXT> x N + </img>; what each image is and whether
  // the text before each image (and after the last) is supervised.
  struct ImageSpec {
    NativeImage native;
    bool gen = false, start_supervised = false, hide_start = false, hide_end = false;
    bool clean_copy = false;  // the clean copy of the preceding generation image (same t)
  };
  struct Part {
    std::string str;
    std::vector<ImageSpec> images;
    std::vector<bool> gap_supervised{false};
  };
  void add_image(Part& p, ImageSpec spec, bool supervise_after) {
    p.str += "<img>";
    for (int64_t i = 0, n = spec.native.tokens(cfg.merge()); i < n; ++i) p.str += "<IMG_CONTEXT>";
    p.str += "</img>";
    p.images.push_back(std::move(spec));
    p.gap_supervised.push_back(supervise_after);
  }
  void emit(const Part& p) {
    const auto ids = tok.encode(p.str, /*add_special_tokens=*/false);
    size_t gap = 0, img = 0;
    int64_t gen_k = -1;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] != sid.img_start) {
        push(ids[i], p.gap_supervised[gap], ++t);
        continue;
      }
      check(img < p.images.size(), "training example", "its text holds an <img> token of its own");
      const auto& spec = p.images[img++];
      const int64_t k = image(spec.native, spec.gen, spec.start_supervised, spec.hide_start, spec.hide_end,
                              spec.clean_copy ? gen_k : -1);
      if (spec.gen) gen_k = k;
      i += static_cast<size_t>(spec.native.tokens(cfg.merge())) + 1;  // its ctx rows and </img>
      ++gap;
    }
    check(img == p.images.size(), "training example", "an image's tokens did not survive tokenization");
  }
  // One image run. A clean copy of the preceding generation image (`copy_of_k` >= 0) reuses its t
  // values and leaves the running t where the generation copy left it.
  int64_t image(const NativeImage& n, bool gen, bool start_supervised, bool hide_start, bool hide_end,
                int64_t copy_of_k = -1) {
    const int64_t k = copy_of_k >= 0 ? copy_of_k : t + 1;
    const int64_t run = static_cast<int64_t>(s.images.size()) + 1, m = cfg.merge();
    const int64_t gw = n.grid.second / m, count = n.tokens(m);
    push(sid.img_start, start_supervised, k, 0, 0, 0, hide_start);
    TrainImage ti;
    ti.native = n;
    ti.gen = gen;
    ti.first_token = static_cast<int64_t>(s.ids.size());
    ti.tokens = count;
    for (int64_t i = 0; i < count; ++i) push(sid.img_context, false, k + 1, run, i / gw, i % gw);
    push(sid.img_end, false, k + 2, 0, 0, 0, hide_end);
    s.images.push_back(std::move(ti));
    if (copy_of_k < 0) t = k + 2;
    return k;
  }
};

int64_t max_pixels_for(int64_t max_px, size_t n) {  // the official multi-image budget
  if (n <= 1) return max_px;
  return std::max(std::min(max_px, (kPackTokens - 3072) * 1024 / static_cast<int64_t>(n)), kMinPixels);
}
}  // namespace

int64_t TrainSequence::ce_tokens() const {
  int64_t n = 0;
  for (size_t i = 1; i < labels.size(); ++i) n += labels[i] != kIgnore;
  return n;
}
int64_t TrainSequence::gen_tokens() const {
  int64_t n = 0;
  for (const auto& im : images) n += im.gen ? im.tokens : 0;
  return n;
}
namespace {
// Supervised labels per document (N_d; the first row of a document is never supervised, so this
// is also the count of its positions whose next token is).
std::vector<int64_t> supervised_per_doc(const TrainSequence& s) {
  std::vector<int64_t> n;
  for (size_t i = 0; i < s.labels.size(); ++i) {
    if (static_cast<size_t>(s.doc[i]) >= n.size()) n.resize(s.doc[i] + 1, 0);
    n[s.doc[i]] += s.labels[i] != kIgnore;
  }
  return n;
}
}  // namespace

double TrainSequence::ce_norm() const {
  double norm = 0;
  for (const int64_t n : supervised_per_doc(*this)) norm += std::sqrt(static_cast<double>(n));
  return norm;
}
double TrainSequence::gen_norm() const {
  double n = 0;
  for (const auto& im : images) n += im.gen ? std::sqrt(static_cast<double>(im.tokens)) : 0.0;
  return n;
}
torch::Tensor TrainSequence::indexes() const {
  return torch::stack({torch::tensor(t, torch::kLong), torch::tensor(h, torch::kLong), torch::tensor(w, torch::kLong)});
}

namespace {
struct ImageCounts {
  size_t assistant = 0, user = 0;
  size_t total() const { return assistant + user; }
};
ImageCounts image_counts(const models::TrainExample& ex) {
  ImageCounts c;
  for (const auto& turn : ex.turns) (turn.role == "assistant" ? c.assistant : c.user) += turn.content.num_images();
  return c;
}
// 1 on the rows of generation images, 0 elsewhere.
std::vector<uint8_t> gen_rows(const TrainSequence& s) {
  std::vector<uint8_t> g(s.ids.size(), 0);
  for (const auto& im : s.images)
    if (im.gen) std::fill(g.begin() + im.first_token, g.begin() + im.first_token + im.tokens, 1);
  return g;
}
}  // namespace

TrainTask task_of(const models::TrainExample& ex) {
  const auto [assistant_images, user_images] = image_counts(ex);
  const auto& last = ex.turns.empty() ? std::vector<generate::InputChunk>{} : ex.turns.back().content.chunks;
  const bool ends_with_image = !last.empty() && last.back().is_image();
  if (assistant_images == 1 && ends_with_image) return user_images ? TrainTask::Edit : TrainTask::TextToImage;
  return assistant_images > 0 ? TrainTask::Interleave : TrainTask::Understanding;
}

namespace {
using generate::InputChunk;
std::vector<InputChunk> images_of(const std::vector<InputChunk>& chunks) {
  std::vector<InputChunk> out;
  for (const auto& c : chunks)
    if (c.is_image()) out.push_back(c);
  return out;
}
// The official edit 'img' case: the text with "<image>\n" and "<image>" removed.
std::vector<InputChunk> without_images(const std::vector<InputChunk>& chunks) {
  std::vector<InputChunk> out;
  bool after_image = false;
  for (const auto& c : chunks) {
    if (c.is_image()) {
      after_image = true;
      continue;
    }
    InputChunk t = c;
    if (after_image && !t.text.empty() && t.text[0] == '\n') t.text.erase(0, 1);
    after_image = false;
    if (t.text.empty()) continue;
    if (!out.empty()) out.back().text += t.text;  // text pieces around a removed image join up
    else out.push_back(t);
  }
  return out;
}
}  // namespace

std::optional<models::TrainExample> draw_condition_dropout(const models::TrainExample& ex, const CondDropout& p,
                                                           const std::function<double()>& uniform) {
  const TrainTask task = task_of(ex);
  if (task == TrainTask::Understanding) return std::nullopt;
  const double img = task == TrainTask::Interleave ? 0.0 : p.img;  // interleave has no 'img' case
  const double total = p.txt + img + p.txtimg;
  if (total <= 0 || uniform() >= total) return std::nullopt;
  const double pick = uniform() * total;
  enum { Txt, Img, TxtImg } which = pick < p.txt ? Txt : pick < p.txt + img ? Img : TxtImg;

  models::TrainExample v = ex;
  v.condition_dropped = which != Img;
  v.image_roles.clear();  // the variant's images follow the official rules
  v.system_prompt = task == TrainTask::Interleave ? std::string() : ex.system_prompt.value_or("");
  size_t first_user = v.turns.size();
  for (size_t i = 0; i < v.turns.size() && first_user == v.turns.size(); ++i)
    if (v.turns[i].role != "assistant") first_user = i;
  auto& target_turn = v.turns.back().content.chunks;
  if (task == TrainTask::Interleave) {
    if (which == Txt) {
      for (auto& t : v.turns) t.content.chunks = images_of(t.content.chunks);
      return v;
    }
    std::vector<InputChunk> drawn;  // every assistant image, in order
    for (const auto& t : ex.turns)
      if (t.role == "assistant")
        for (const auto& c : images_of(t.content.chunks)) drawn.push_back(c);
    const size_t k = std::min(drawn.size() - 1, static_cast<size_t>(uniform() * static_cast<double>(drawn.size())));
    models::TrainTurn user, assistant;
    user.role = "user";
    assistant.role = "assistant";
    assistant.content.chunks = {drawn[k]};
    assistant.content.placed_by_markers = user.content.placed_by_markers = true;
    v.turns = {user, assistant};
    return v;
  }
  // text-to-image / edit: the target is the last chunk of the last turn
  const InputChunk target = target_turn.back();
  std::vector<InputChunk> sources;
  for (size_t i = 0; i + 1 < v.turns.size(); ++i)
    if (v.turns[i].role != "assistant")
      for (const auto& c : images_of(v.turns[i].content.chunks)) sources.push_back(c);
  if (which != Img) target_turn = {target};  // a plan before the image goes with the prompt
  for (size_t i = 0; i + 1 < v.turns.size(); ++i) {
    auto& chunks = v.turns[i].content.chunks;
    if (v.turns[i].role == "assistant") continue;
    if (i == first_user) chunks = which == Txt ? sources : which == Img ? without_images(chunks) : std::vector<InputChunk>{};
    else chunks = without_images(chunks);  // the official case texts hold every input image in the first turn
  }
  return v;
}

std::optional<models::TrainExample> draw_sample_variant(const models::TrainExample& ex, const CondDropout& p,
                                                        const std::function<double()>& uniform) {
  auto v = draw_condition_dropout(ex, p, uniform);
  const models::TrainExample& cur = v ? *v : ex;
  if (cur.condition_dropped || !cur.image_roles.empty() || task_of(cur) != TrainTask::Interleave) return v;
  const auto& last = cur.turns.back().content.chunks;
  if (last.empty() || !last.back().is_image() || uniform() >= kFinalImageCopyProb) return v;
  models::TrainExample out = cur;
  for (const auto& turn : out.turns)
    for (const auto& c : turn.content.chunks)
      if (c.is_image()) out.image_roles.push_back(turn.role == "assistant" ? "gen+und" : "und");
  return out;
}

TrainSequence build_train_sequence(const models::TrainExample& ex, const U1Config& cfg, const text::Tokenizer& tok,
                                   const SpecialIds& sid) {
  check(!ex.turns.empty() && ex.turns.back().role == "assistant", "training example", "must end with an assistant turn");
  const TrainTask task = task_of(ex);
  const bool gen_task = task != TrainTask::Understanding;
  // A CFG-dropped interleave sample supervises no text; any dropped sample opens its assistant
  // turns without the empty think block (the official cfg_drop).
  const bool text_targets = !(ex.condition_dropped && task == TrainTask::Interleave);
  const ImageCounts images = image_counts(ex);
  // Image roles: given by the data (checked against where each image is) or the official rule.
  std::vector<std::string> roles = ex.image_roles;
  if (!roles.empty()) {
    check(roles.size() == images.total(), "image_roles",
          "needs one role per image (" + std::to_string(images.total()) + "), got " +
              std::to_string(roles.size()));
    size_t k = 0;
    for (const auto& turn : ex.turns)
      for (const auto& c : turn.content.chunks) {
        if (!c.is_image()) continue;
        const std::string& r = roles[k++];
        const bool ok = turn.role != "assistant" ? r == "und"
                        : task == TrainTask::Interleave ? (r == "gen" || r == "gen+und")
                                                        : r == "gen";
        check(ok, "image_roles",
              "image " + std::to_string(k) + " is \"" + r + "\"; SenseNova-U1 takes \"und\" for a user image, \"gen\" for " +
                  (task == TrainTask::Interleave ? "an assistant image, or \"gen+und\" for one followed by its clean copy"
                                                 : "the generation target"));
      }
  }

  // Images resized as the official data pipeline: a generation sample's every image within
  // 256^2..512^2 pixels, an understanding sample's within 256^2..2048^2.
  const size_t n_images = images.total();
  // A model with its own limits (config "omni".image_pixels) uses them for every image.
  const int64_t min_px = cfg.omni.image_pixels ? cfg.omni.image_pixels->first : kMinPixels;
  const int64_t max_px = cfg.omni.image_pixels ? cfg.omni.image_pixels->second
                                               : max_pixels_for(gen_task ? kMaxPixelsGen : kMaxPixelsUnd, n_images);
  Builder b{cfg, tok, sid, {}};
  b.s.task = task;
  std::string system = ex.system_prompt            ? *ex.system_prompt
                       : task == TrainTask::Interleave ? std::string(kSystemMessageForInterleave)
                       : gen_task                      ? system_message_for_gen(cfg)
                                                       : std::string();
  using Part = Builder::Part;
  auto text_part = [&](const std::string& str) {
    Part p;
    p.str = str;
    b.emit(p);
  };
  if (!system.empty()) text_part("<|im_start|>system\n" + system + "<|im_end|>\n");
  size_t image_no = 0;  // marker order, for the roles
  for (size_t ti = 0; ti < ex.turns.size(); ++ti) {
    const auto& turn = ex.turns[ti];
    const auto& chunks = turn.content.chunks;
    Part p;
    if (turn.role != "assistant") {
      p.str = "<|im_start|>" + turn.role + "\n";
      for (const auto& c : chunks) {
        if (c.is_image()) {
          ++image_no;
          Builder::ImageSpec spec;
          spec.native = load_image_native(c.image, cfg, min_px, max_px);
          b.add_image(p, std::move(spec), false);
        } else {
          p.str += c.text;
        }
      }
      p.str += "<|im_end|>\n";
      b.emit(p);
      continue;
    }
    const bool opens_think = !chunks.empty() && !chunks.front().is_image() && starts_with(chunks.front().text, "<think>");
    text_part(opens_think || ex.condition_dropped ? "<|im_start|>assistant\n" : "<|im_start|>assistant\n<think>\n\n</think>\n\n");
    const bool last_turn = ti + 1 == ex.turns.size();
    p.gap_supervised = {text_targets};  // turns false at a t2i / edit target or the final single interleave image
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      const auto& c = chunks[ci];
      if (!c.is_image()) {
        p.str += c.text;
        continue;
      }
      Builder::ImageSpec spec;
      spec.native = load_image_native(c.image, cfg, min_px, max_px);
      spec.gen = true;
      const bool final_image = last_turn && ci + 1 == chunks.size();
      const bool copied = roles.empty() ? !final_image : roles[image_no] == "gen+und";
      ++image_no;
      if (task == TrainTask::TextToImage || task == TrainTask::Edit) {
        b.add_image(p, std::move(spec), false);
      } else if (!copied) {  // an answer's final image (single unless drawn a copy), or as the roles say
        spec.start_supervised = text_targets;
        b.add_image(p, std::move(spec), text_targets && !final_image);  // nothing after a single final image
      } else {  // noisy copy, then the clean copy with the same t; the inner boundary hidden
        Builder::ImageSpec copy;
        copy.native = spec.native;
        copy.hide_start = true;
        copy.clean_copy = true;
        spec.start_supervised = text_targets;
        spec.hide_end = true;
        b.add_image(p, std::move(spec), text_targets);
        b.add_image(p, std::move(copy), text_targets);
      }
    }
    p.str += "<|im_end|>\n";
    b.emit(p);
  }
  TrainSequence s = std::move(b.s);
  if (task == TrainTask::Understanding)
    check(s.ce_tokens() > 0, "training example", "has nothing to learn (no assistant text)");
  return s;
}

TrainSequence pack_sequences(std::vector<TrainSequence> docs) {
  check(!docs.empty(), "pack", "no samples");
  if (docs.size() == 1) return std::move(docs[0]);
  TrainSequence p;
  p.task = docs[0].task;
  int64_t runs = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    auto& s = docs[d];
    const int64_t offset = static_cast<int64_t>(p.ids.size());
    auto append = [](std::vector<int64_t>& to, const std::vector<int64_t>& from) { to.insert(to.end(), from.begin(), from.end()); };
    append(p.ids, s.ids);
    append(p.labels, s.labels);
    append(p.t, s.t);
    append(p.h, s.h);
    append(p.w, s.w);
    for (size_t i = 0; i < s.ids.size(); ++i) {
      p.doc.push_back(static_cast<int64_t>(d));
      p.image_of.push_back(s.image_of[i] > 0 ? s.image_of[i] + runs : 0);
    }
    p.hidden.insert(p.hidden.end(), s.hidden.begin(), s.hidden.end());
    for (auto& im : s.images) {
      im.first_token += offset;
      p.images.push_back(std::move(im));
    }
    runs += static_cast<int64_t>(s.images.size());
  }
  return p;
}

torch::Tensor train_attention_mask(const TrainSequence& s) {
  const int64_t T = static_cast<int64_t>(s.ids.size());
  auto t = torch::tensor(s.t, torch::kLong), img = torch::tensor(s.image_of, torch::kLong);
  auto genv = gen_rows(s);
  auto gen = torch::from_blob(genv.data(), {T}, torch::kUInt8).to(torch::kBool);
  auto hid = torch::from_blob(const_cast<uint8_t*>(s.hidden.data()), {T}, torch::kUInt8).to(torch::kBool);
  auto tq = t.unsqueeze(1), tk = t.unsqueeze(0), iq = img.unsqueeze(1), ik = img.unsqueeze(0);
  auto gq = gen.unsqueeze(1), gk = gen.unsqueeze(0);
  auto same_img = iq.gt(0) & iq.eq(ik);
  auto doc = torch::tensor(s.doc, torch::kLong);
  auto same_doc = doc.unsqueeze(1).eq(doc.unsqueeze(0));
  auto see = same_doc & (tk.le(tq) | same_img) & (~gk | (gq & same_img)) & ~(gq & ~gk & tk.eq(tq)) & ~hid.unsqueeze(0);
  return torch::zeros({T, T}, torch::kFloat32).masked_fill(~see, -std::numeric_limits<float>::infinity());
}

nn::PackedLayout train_attention_layout(const TrainSequence& s) {
  const int64_t T = static_cast<int64_t>(s.ids.size());
  const auto gen = gen_rows(s);
  nn::PackedLayout l;
  // a row's split key: the hidden rows each alone, an image run by its id, text as one kind
  auto key = [&](int64_t i) -> int64_t { return s.hidden[i] ? -2 - i : s.image_of[i]; };
  for (int64_t i = 0; i < T; ++i) {
    const bool new_doc = i == 0 || s.doc[i] != s.doc[i - 1];
    if (new_doc) l.sample_lens.push_back(0);
    ++l.sample_lens.back();
    if (new_doc || key(i) != key(i - 1)) {
      l.split_lens.push_back(0);
      l.modes.push_back(s.hidden[i] || gen[i] ? "noise" : s.image_of[i] > 0 ? "full" : "causal");
    }
    ++l.split_lens.back();
  }
  return l;
}

TrainOutputs forward_train(NeoChatImpl& m, const TrainSequence& s, at::Generator* gen, const TrainDraws* draws) {
  const auto dev = m.device();
  const auto dt = m.dtype();
  const U1Config& cfg = m.cfg;
  const int64_t T = static_cast<int64_t>(s.ids.size()), p = cfg.patch_size(), mg = cfg.merge();
  const auto li = torch::TensorOptions().dtype(torch::kLong).device(dev);
  auto x = m.language_model->model->embed(torch::tensor(s.ids, li));
  const auto fo = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  auto mean = torch::tensor({0.485, 0.456, 0.406}, fo).view({1, 3, 1, 1});
  auto std = torch::tensor({0.229, 0.224, 0.225}, fo).view({1, 3, 1, 1});
  // [h * w, 3 * p * p] patch rows (row, col, c, i, j) -> [tokens, (p * merge)^2 * 3] (py, px, c)
  auto to_tokens = [&](const torch::Tensor& rows, const GridHW& g) {
    return rows.reshape({g.first / mg, mg, g.second / mg, mg, 3, p, p})
        .permute({0, 2, 1, 5, 3, 6, 4})
        .reshape({g.first * g.second / (mg * mg), -1});
  };
  struct GenTarget {
    torch::Tensor rows, z, v, t;
    double weight;
  };
  std::vector<GenTarget> targets;
  auto is_gen = gen_rows(s);
  size_t gi = 0;
  for (const auto& im : s.images) {
    auto pv = im.native.pixel_values.to(dev);
    auto rows = torch::arange(im.first_token, im.first_token + im.tokens, li);
    torch::Tensor emb;
    if (!im.gen) {
      emb = m.vision_model->forward(pv.to(dt), {im.native.grid});
    } else {
      // x in [-1, 1] from the ImageNet-normalised pixels; noise first, then u (per image, in order)
      auto xp = ((pv.view({-1, 3, p, p}) * std + mean).clamp(0, 1).view({pv.size(0), -1}) - 0.5) * 2;
      const double ns = std::sqrt(static_cast<double>(im.tokens) / cfg.noise_scale_base_image_seq_len) * cfg.noise_scale;
      torch::Tensor noise = draws && gi < draws->noise.size() && draws->noise[gi].defined()
                                ? draws->noise[gi].to(fo)
                                : at::randn(xp.sizes(), *gen, fo);
      noise = noise * ns;
      torch::Tensor u = draws && gi < draws->u.size() && draws->u[gi].defined() ? draws->u[gi].to(fo).reshape({1})
                                                                                 : at::randn({1}, *gen, fo);
      u = u * cfg.P_std + cfg.P_mean;
      auto t = 1 / (1 + torch::exp(-u));
      auto sigma = 1 - t;  // the standard schedule with the config's (training) shift
      sigma = cfg.timestep_shift * sigma / (1 + (cfg.timestep_shift - 1) * sigma);
      t = 1 - sigma;
      auto z = t * xp + (1 - t) * noise;
      emb = m.fm_modules->vision_model_mot_gen->forward(z.to(dt), {im.native.grid});
      auto tt = t.expand({im.tokens});
      auto cond = m.fm_modules->timestep_embedder->forward(tt);
      if (m.fm_modules->noise_scale_embedder)
        cond = cond + m.fm_modules->noise_scale_embedder->forward(
                          torch::full({im.tokens}, static_cast<float>(ns / cfg.noise_scale_max_value), fo));
      emb = emb + cond;
      auto zt = to_tokens(z, im.native.grid), xt = to_tokens(xp, im.native.grid);
      auto v = (xt - zt) / (1 - t).clamp_min(cfg.t_eps);
      targets.push_back({rows, zt, v, t, 1.0 / std::sqrt(static_cast<double>(im.tokens))});
      ++gi;
    }
    x = x.index_copy(0, rows, emb.to(x.scalar_type()));
  }
  auto gen_mask = torch::from_blob(is_gen.data(), {T}, torch::kUInt8).to(torch::kBool);
  const auto route = TokenRoute::from_gen_mask(gen_mask);
  const auto layout = train_attention_layout(s);
  auto h = m.language_model->model->forward(x, s.indexes().to(dev), route, nullptr, CacheUse::None, &layout);

  // The loss rows: all of them, or under sequence parallelism the ones this process owns.
  nn::SequenceParallel* sp = m.language_model->model->sequence_parallel;
  nn::SequenceParallel::Split split;
  if (sp) split = sp->split(T);
  TrainOutputs out;
  std::vector<int64_t> pos, tgt;
  std::vector<float> weight;  // 1 / sqrt(N_d) of the document the target belongs to
  const auto per_doc = supervised_per_doc(s);
  for (int64_t i = 0; i + 1 < T; ++i)
    if (s.labels[i + 1] != kIgnore && (!sp || split.owns(i))) {
      pos.push_back(i);
      tgt.push_back(s.labels[i + 1]);
      weight.push_back(static_cast<float>(1.0 / std::sqrt(static_cast<double>(per_doc[s.doc[i + 1]]))));
    }
  if (!pos.empty()) {
    auto logits = m.logits(h.index_select(0, torch::tensor(pos, li))).to(torch::kFloat32);
    out.ce_raw = torch::nn::functional::cross_entropy(
        logits, torch::tensor(tgt, li), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    out.ce = out.ce_raw * torch::tensor(weight, fo);
  }
  std::vector<torch::Tensor> raw, weighted;
  for (const auto& g : targets) {
    auto which = sp ? torch::nonzero(sp->owned(g.rows, split)).view(-1) : torch::Tensor();
    auto pick = [&](const torch::Tensor& x) { return which.defined() ? x.index_select(0, which) : x; };
    auto xhat = m.fm_modules->fm_head->forward(h.index_select(0, pick(g.rows))).to(torch::kFloat32);
    auto vhat = (xhat - pick(g.z)) / (1 - g.t).clamp_min(cfg.t_eps);
    auto e = (vhat - pick(g.v)).pow(2).mean(1);
    raw.push_back(e);
    weighted.push_back(e * g.weight);
  }
  if (!raw.empty()) {
    out.gen_raw = torch::cat(raw);
    out.gen = torch::cat(weighted);
  }
  return out;
}

}  // namespace omni::sensenova_u1
