// SenseNova-U1 training: the official sequence rules (docs/dev/u1_training_rules.md), the attention
// rule, and the training forward checked against the inference path, which matches the official
// code: a text-to-image target's x-prediction under the training mask equals predict_x over the
// prefilled prefix (same rows, same t/h/w, same inputs), and an understanding sample's CE equals
// the cross-entropy of the prefill logits. The official step-0 losses and gradients are checked in
// test_u1_train_golden_torch.cpp (fixture made by scripts/dev/u1_train_golden.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "alignment_util.h"
#include "omni/generate/random.h"
#include "omni/models/sensenova_u1/training.h"
#include "u1_test_util.h"

using namespace omni::testing;
namespace u1 = omni::sensenova_u1;
using omni::models::TrainExample;

namespace {
struct U1Parts {
  u1::U1Config cfg = u1::U1Config::from_dir(u1_dir());
  omni::text::Tokenizer tok = omni::text::Tokenizer::from_file(u1_dir() + "/tokenizer.json");
  u1::SpecialIds ids = u1::SpecialIds::from(tok);
  std::shared_ptr<u1::NeoChatImpl> model = u1::NeoChatImpl::load(cfg);
};
U1Parts& parts() {
  static U1Parts p;
  return p;
}

omni::io::Image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  omni::io::Image im(w, h);
  for (size_t i = 0; i < im.rgb.size(); i += 3) {
    im.rgb[i] = r;
    im.rgb[i + 1] = g;
    im.rgb[i + 2] = b;
  }
  return im;
}

TrainExample example(const std::vector<std::pair<std::string, std::string>>& turns, const std::vector<omni::io::Image>& imgs) {
  return train_conversation(turns, imgs);
}
}  // namespace

TEST(U1Train, TextToImageSequence) {
  auto& P = parts();
  auto s = u1::build_train_sequence(example({{"user", "a red circle"}, {"assistant", "<image>"}}, {solid(64, 64, 255, 0, 0)}),
                                    P.cfg, P.tok, P.ids);
  EXPECT_EQ(s.task, u1::TrainTask::TextToImage);
  ASSERT_EQ(s.images.size(), 1u);
  EXPECT_TRUE(s.images[0].gen);
  EXPECT_EQ(s.images[0].tokens, 64);  // 64x64 resized up to 256x256 (min_pixels_gen): 8 x 8 tokens
  EXPECT_EQ(s.ce_tokens(), 0);        // everything from the target's <img> on is unsupervised
  EXPECT_EQ(s.gen_tokens(), 64);
  EXPECT_DOUBLE_EQ(s.gen_norm(), 8.0);
  const int64_t first = s.images[0].first_token;
  EXPECT_EQ(s.ids[first - 1], P.ids.img_start);
  EXPECT_EQ(s.t[first], s.t[first - 1] + 1);            // ctx = <img> + 1, all of them
  EXPECT_EQ(s.t[first + 63], s.t[first - 1] + 1);
  EXPECT_EQ(s.t[first + 64], s.t[first - 1] + 2);       // </img>
  EXPECT_EQ(s.h[first + 9], 1);                         // row-major 8 x 8 grid
  EXPECT_EQ(s.w[first + 9], 1);
  // the generation system prompt and the empty think block, as omni infer renders the query
  const std::string head = P.tok.decode(std::vector<int32_t>(s.ids.begin(), s.ids.begin() + first), false);
  EXPECT_NE(head.find("image generation and editing assistant"), std::string::npos);
  EXPECT_NE(head.find("<|im_start|>assistant\n<think>\n\n</think>\n\n<img>"), std::string::npos) << head;
}

TEST(U1Train, InterleaveDuplicatesAssistantImages) {
  auto& P = parts();
  auto ex = example({{"user", "draw a cat"}, {"assistant", "Here:<image> It is a cat."}}, {solid(64, 64, 0, 0, 255)});
  ex.system_prompt = "";
  auto s = u1::build_train_sequence(ex, P.cfg, P.tok, P.ids);
  EXPECT_EQ(s.task, u1::TrainTask::Interleave);
  ASSERT_EQ(s.images.size(), 2u);
  const auto &g = s.images[0], &c = s.images[1];
  EXPECT_TRUE(g.gen);
  EXPECT_FALSE(c.gen);
  // the clean copy takes the generation copy's t (and h/w); text after the pair continues at k + 3
  const int64_t gs = g.first_token - 1, cs = c.first_token - 1;  // the two <img>
  EXPECT_EQ(s.t[cs], s.t[gs]);
  EXPECT_EQ(s.t[c.first_token], s.t[g.first_token]);
  EXPECT_EQ(s.t[cs + c.tokens + 1], s.t[gs + g.tokens + 1]);
  EXPECT_EQ(s.t[cs + c.tokens + 2], s.t[gs] + 3);
  // hidden: the generation copy's </img> and the clean copy's <img>
  EXPECT_TRUE(s.hidden[gs + g.tokens + 1]);
  EXPECT_TRUE(s.hidden[cs]);
  EXPECT_FALSE(s.hidden[gs]);
  // CE: "Here:", the generation copy's <img>, " It is a cat.", <|im_end|>, "\n"
  EXPECT_EQ(s.labels[gs], P.ids.img_start);
  EXPECT_EQ(s.labels[gs + g.tokens + 1], -100);
  EXPECT_EQ(s.labels[cs], -100);
  EXPECT_NE(s.labels[cs + c.tokens + 2], -100);
  EXPECT_EQ(s.labels.back(), P.tok.encode("\n", false)[0]);
  // the attention rule
  auto m = u1::train_attention_mask(s);
  auto sees = [&](int64_t q, int64_t k) { return m[q][k].item<float>() == 0.0f; };
  const int64_t after = cs + c.tokens + 2;
  EXPECT_FALSE(sees(after, g.first_token));      // nobody sees noisy rows ...
  EXPECT_TRUE(sees(g.first_token + 1, g.first_token));  // ... but their own image
  EXPECT_TRUE(sees(g.first_token, gs));          // noisy rows see the prefix up to their <img>
  EXPECT_FALSE(sees(g.first_token, c.first_token));  // not the clean copy (same t)
  EXPECT_TRUE(sees(after, c.first_token));       // later text sees the clean copy
  EXPECT_FALSE(sees(after, cs));                 // hidden boundary
  EXPECT_FALSE(sees(after, gs + g.tokens + 1));
  EXPECT_TRUE(sees(c.first_token, c.first_token + 3));  // an image is bidirectional
  EXPECT_FALSE(sees(gs, gs + 1));                // causal by t
}

TEST(U1Train, UnderstandingCeEqualsThePrefillLogits) {
  auto& P = parts();
  auto ex = example({{"user", "<image>What is it?"}, {"assistant", "A red disc."}}, {omni::io::read_image(u1_dir() + "/und_image.png")});
  auto s = u1::build_train_sequence(ex, P.cfg, P.tok, P.ids);
  EXPECT_EQ(s.task, u1::TrainTask::Understanding);
  EXPECT_EQ(s.gen_tokens(), 0);
  const int64_t n = s.ce_tokens();
  EXPECT_EQ(n, static_cast<int64_t>(P.tok.encode("A red disc.<|im_end|>\n", false).size()));
  auto gen = omni::generate::make_generator(torch::kCPU, 1);
  auto out = u1::forward_train(*P.model, s, &gen);
  ASSERT_EQ(out.ce.numel(), n);
  // the inference path: prefill with the block-causal mask, CE of the logits at the same positions
  c10::InferenceMode guard;
  std::vector<torch::Tensor> pix;
  std::vector<u1::GridHW> grids;
  for (const auto& im : s.images) {
    pix.push_back(im.native.pixel_values);
    grids.push_back(im.native.grid);
  }
  auto ids = torch::tensor(s.ids, torch::kLong);
  auto x = P.model->embed_prefix(ids, P.model->vision_embeds(torch::cat(pix), grids), P.ids.img_context);
  auto ctx = P.model->make_context();
  auto h = P.model->prefill(ctx, x, s.indexes());
  std::vector<int64_t> pos, tgt;
  for (size_t i = 0; i + 1 < s.ids.size(); ++i)
    if (s.labels[i + 1] != -100) {
      pos.push_back(static_cast<int64_t>(i));
      tgt.push_back(s.labels[i + 1]);
    }
  auto want = torch::nn::functional::cross_entropy(P.model->logits(h.index_select(0, torch::tensor(pos))),
                                                   torch::tensor(tgt), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  expect_close("ce (train vs prefill)", out.ce_raw.detach(), want, 1e-5, 1e-5);
  expect_close("ce weight 1/sqrt(N)", out.ce.detach(), want / std::sqrt(double(n)), 1e-5, 1e-5);
}

TEST(U1Train, GenerationLossEqualsTheInferencePrediction) {
  auto& P = parts();
  auto ex = example({{"user", "a red circle"}, {"assistant", "<image>"}}, {omni::io::read_image(u1_dir() + "/edit_image.png")});
  auto s = u1::build_train_sequence(ex, P.cfg, P.tok, P.ids);
  const auto& im = s.images.at(0);
  const int64_t N16 = im.native.grid.first * im.native.grid.second;
  u1::TrainDraws d;
  auto g = omni::generate::make_generator(torch::kCPU, 5);
  d.noise = {at::randn({N16, 768}, g, torch::kFloat32)};
  d.u = {torch::tensor({0.3f})};
  auto out = u1::forward_train(*P.model, s, nullptr, &d);
  ASSERT_EQ(out.gen_raw.numel(), im.tokens);
  // the same target through the inference path
  c10::InferenceMode guard;
  const auto& c = P.cfg;
  const double ns = std::sqrt(double(im.tokens) / c.noise_scale_base_image_seq_len) * c.noise_scale;
  auto u = torch::tensor({0.3f}) * c.P_std + c.P_mean;
  auto t = 1 / (1 + torch::exp(-u));  // shift 1 (the config's training shift)
  auto mean = torch::tensor({0.485, 0.456, 0.406}).view({1, 3, 1, 1}), sd = torch::tensor({0.229, 0.224, 0.225}).view({1, 3, 1, 1});
  auto pv = im.native.pixel_values;
  auto xp = ((pv.view({-1, 3, 16, 16}) * sd + mean).clamp(0, 1).view({N16, -1}) - 0.5) * 2;
  auto z_rows = t * xp + (1 - t) * (d.noise[0] * ns);
  const int64_t H = im.native.grid.first * 16, W = im.native.grid.second * 16;
  auto to_image = [&](const torch::Tensor& rows) {  // patch rows (c, py, px) -> [1, 3, H, W]
    return rows.view({H / 16, W / 16, 3, 16, 16}).permute({2, 0, 3, 1, 4}).reshape({1, 3, H, W});
  };
  auto z_img = to_image(z_rows), x_img = to_image(xp);
  auto ctx = P.model->make_context();
  const int64_t prefix = im.first_token;  // up to and including <img>
  auto ids = torch::tensor(std::vector<int64_t>(s.ids.begin(), s.ids.begin() + prefix), torch::kLong);
  P.model->prefill(ctx, P.model->embed_prefix(ids, {}, P.ids.img_context), s.indexes().narrow(1, 0, prefix));
  auto gin = P.model->gen_inputs(z_img, t[0], ns / c.noise_scale_max_value);
  auto xhat = P.model->predict_x(ctx, gin, P.model->image_indexes(H / 32, W / 32, ctx.t + 1));
  auto z = u1::patchify(z_img, 32, false)[0], x = u1::patchify(x_img, 32, false)[0];
  auto denom = (1 - t).clamp_min(c.t_eps);
  auto want = ((xhat - z) / denom - (x - z) / denom).pow(2).mean(1);
  expect_close("gen loss (train vs predict_x)", out.gen_raw.detach(), want, 1e-5, 1e-4);
  expect_close("gen weight 1/sqrt(L)", out.gen.detach(), want / std::sqrt(double(im.tokens)), 1e-5, 1e-4);
}

TEST(U1Train, GradientsReachEveryPartThatTakesPart) {
  auto& P = parts();
  auto ex = example({{"user", "<image>make it blue"}, {"assistant", "<image>"}},
                    {omni::io::read_image(u1_dir() + "/und_image.png"), omni::io::read_image(u1_dir() + "/edit_image.png")});
  auto s = u1::build_train_sequence(ex, P.cfg, P.tok, P.ids);
  EXPECT_EQ(s.task, u1::TrainTask::Edit);
  EXPECT_FALSE(s.images[0].gen);
  EXPECT_TRUE(s.images[1].gen);
  for (const auto& im : s.images) EXPECT_LE(im.native.grid.first * im.native.grid.second * 256, 512 * 512);
  auto gen = omni::generate::make_generator(torch::kCPU, 3);
  P.model->zero_grad();
  auto out = u1::forward_train(*P.model, s, &gen);
  ASSERT_TRUE(out.gen.defined());
  EXPECT_TRUE(torch::isfinite(out.gen).all().item<bool>());
  out.gen.sum().backward();
  for (const char* name : {"fm_modules.fm_head.0.weight", "fm_modules.vision_model_mot_gen.embeddings.patch_embedding.weight",
                           "fm_modules.timestep_embedder.mlp.0.weight", "fm_modules.noise_scale_embedder.mlp.2.weight",
                           "language_model.model.layers.0.mlp_mot_gen.down_proj.weight",
                           "language_model.model.layers.1.self_attn.q_proj_mot_gen.weight",
                           // the edit source reaches the generation rows through attention (its K/V)
                           "vision_model.embeddings.patch_embedding.weight",
                           "language_model.model.layers.0.self_attn.k_proj.weight"}) {
    auto p = P.model->named_parameters()[name];
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0) << name;
  }
  // no CE target in an edit: lm_head untouched
  auto head = P.model->named_parameters()["language_model.lm_head.weight"];
  EXPECT_TRUE(!head.grad().defined() || head.grad().abs().sum().item<double>() == 0);
  P.model->zero_grad();
}

// A micro-batch packed into one sequence of documents (the official PackedDataset) gives every
// sample the losses it has alone: documents do not see each other, t restarts per document, the
// draws happen in sequence order either way.
TEST(U1Train, PackedDocumentsEqualSeparateSamples) {
  auto& P = parts();
  auto und = example({{"user", "<image>What is it?"}, {"assistant", "A red disc."}}, {omni::io::read_image(u1_dir() + "/und_image.png")});
  auto t2i = example({{"user", "a red circle"}, {"assistant", "<image>"}}, {omni::io::read_image(u1_dir() + "/edit_image.png")});
  auto s1 = u1::build_train_sequence(und, P.cfg, P.tok, P.ids), s2 = u1::build_train_sequence(t2i, P.cfg, P.tok, P.ids);
  auto g1 = omni::generate::make_generator(torch::kCPU, 9);
  auto a = u1::forward_train(*P.model, s1, &g1);
  auto b = u1::forward_train(*P.model, s2, &g1);
  auto packed = u1::pack_sequences({s1, s2});
  EXPECT_EQ(packed.ids.size(), s1.ids.size() + s2.ids.size());
  EXPECT_EQ(packed.t[s1.ids.size()], 0);  // t restarts
  EXPECT_DOUBLE_EQ(packed.ce_norm(), s1.ce_norm() + s2.ce_norm());
  auto g2 = omni::generate::make_generator(torch::kCPU, 9);
  auto p = u1::forward_train(*P.model, packed, &g2);
  expect_close("packed ce", p.ce.detach(), a.ce.detach(), 1e-5, 1e-5);
  expect_close("packed gen", p.gen.detach(), b.gen.detach(), 1e-5, 1e-4);
}

// ---- CFG condition dropout (official image_gen_prepare_conv) -------------------------------------
namespace {
// Scripted uniform draws, and the text of a sequence up to its first image's <img> (inclusive).
std::function<double()> draws(std::vector<double> v) {
  auto left = std::make_shared<std::vector<double>>(std::move(v));
  return [left] {
    EXPECT_FALSE(left->empty()) << "more draws than scripted";
    if (left->empty()) return 0.0;
    const double u = left->front();
    left->erase(left->begin());
    return u;
  };
}
std::string text_of(const u1::TrainSequence& s, const omni::text::Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < s.ids.size(); ++i)
    if (s.image_of[i] == 0) ids.push_back(static_cast<int32_t>(s.ids[i]));
  return tok.decode(ids, false);
}
const u1::CondDropout kOfficial;  // txt 0.1, img 0, txtimg 0.1
}  // namespace

TEST(U1TrainDropout, TextToImageTxtDropsPromptPlanSystemAndThinkBlock) {
  auto& P = parts();
  auto ex = example({{"user", "a red circle"}, {"assistant", "<think>\nround\n</think>\n\n<image>"}}, {solid(64, 64, 255, 0, 0)});
  const auto kept = u1::build_train_sequence(ex, P.cfg, P.tok, P.ids);
  EXPECT_GT(kept.ce_tokens(), 0);  // the plan is supervised
  EXPECT_FALSE(u1::draw_condition_dropout(ex, kOfficial, draws({0.2})).has_value());  // 0.2 >= 0.1 + 0 + 0.1
  auto v = u1::draw_condition_dropout(ex, kOfficial, draws({0.05, 0.05}));  // dropped; 0.05 * 0.2 < 0.1: txt
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->condition_dropped);
  auto s = u1::build_train_sequence(*v, P.cfg, P.tok, P.ids);
  EXPECT_EQ(s.task, u1::TrainTask::TextToImage);
  EXPECT_EQ(text_of(s, P.tok), "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<img></img><|im_end|>\n");
  EXPECT_EQ(s.ce_tokens(), 0);
  EXPECT_EQ(s.gen_tokens(), kept.gen_tokens());
  // a prompt the data sets itself stays
  ex.system_prompt = "Be brief.";
  auto own = u1::build_train_sequence(*u1::draw_condition_dropout(ex, kOfficial, draws({0.05, 0.05})), P.cfg, P.tok, P.ids);
  EXPECT_EQ(text_of(own, P.tok).rfind("<|im_start|>system\nBe brief.<|im_end|>\n", 0), 0u);
}

TEST(U1TrainDropout, EditCases) {
  auto& P = parts();
  auto ex = example({{"user", "<image>\nmake it blue"}, {"assistant", "<image>"}}, {solid(64, 64, 255, 0, 0), solid(64, 64, 0, 0, 255)});
  const u1::CondDropout all{0.2, 0.3, 0.5};  // cases by u * 1.0: [0, .2) txt, [.2, .5) img, [.5, 1) txtimg
  auto txt = u1::build_train_sequence(*u1::draw_condition_dropout(ex, all, draws({0.0, 0.1})), P.cfg, P.tok, P.ids);
  EXPECT_EQ(txt.task, u1::TrainTask::Edit);
  EXPECT_EQ(text_of(txt, P.tok), "<|im_start|>user\n<img></img><|im_end|>\n<|im_start|>assistant\n<img></img><|im_end|>\n");
  auto imgv = u1::draw_condition_dropout(ex, all, draws({0.0, 0.3}));
  EXPECT_FALSE(imgv->condition_dropped);  // the prompt stays, so does the empty think block
  auto img = u1::build_train_sequence(*imgv, P.cfg, P.tok, P.ids);
  EXPECT_EQ(img.images.size(), 1u);
  EXPECT_EQ(text_of(img, P.tok),
            "<|im_start|>user\nmake it blue<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n<img></img><|im_end|>\n");
  auto both = u1::build_train_sequence(*u1::draw_condition_dropout(ex, all, draws({0.0, 0.9})), P.cfg, P.tok, P.ids);
  EXPECT_EQ(text_of(both, P.tok), "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<img></img><|im_end|>\n");
  ASSERT_EQ(both.images.size(), 1u);
  EXPECT_TRUE(both.images[0].gen);
  // understanding is never dropped (and draws nothing)
  auto und = example({{"user", "<image>what is it?"}, {"assistant", "red"}}, {solid(64, 64, 255, 0, 0)});
  EXPECT_FALSE(u1::draw_condition_dropout(und, all, draws({})).has_value());
}

TEST(U1TrainDropout, InterleaveCases) {
  auto& P = parts();
  auto ex = example({{"user", "draw two"}, {"assistant", "One:<image>Two:<image>Done."}},
                    {solid(64, 64, 255, 0, 0), solid(64, 128, 0, 255, 0)});
  // txt: every turn keeps only its images; no system turn, no think block, no text target
  auto tv = u1::draw_condition_dropout(ex, kOfficial, draws({0.0, 0.0}));
  auto t = u1::build_train_sequence(*tv, P.cfg, P.tok, P.ids);
  EXPECT_EQ(t.task, u1::TrainTask::Interleave);
  EXPECT_EQ(text_of(t, P.tok),
            "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<img></img><img></img><img></img><|im_end|>\n");
  EXPECT_EQ(t.ce_tokens(), 0);
  EXPECT_EQ(t.images.size(), 3u);  // the first image duplicated, the final one single
  EXPECT_EQ(t.gen_tokens(), 64 + 72);  // 64x64 -> 256x256 (8 x 8); 64x128 -> 192x384 (6 x 12)
  // txtimg: one assistant image drawn uniformly (third draw 0.7 of 2 -> the second)
  auto iv = u1::draw_condition_dropout(ex, kOfficial, draws({0.0, 0.9, 0.7}));
  auto i = u1::build_train_sequence(*iv, P.cfg, P.tok, P.ids);
  ASSERT_EQ(i.images.size(), 1u);
  EXPECT_EQ(i.images[0].tokens, 72);
  EXPECT_EQ(i.ce_tokens(), 0);
  EXPECT_EQ(text_of(i, P.tok), "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<img></img><|im_end|>\n");
}

TEST(U1TrainDropout, RatesFollowTheProbabilities) {
  auto& P = parts();
  auto ex = example({{"user", "<image>\nmake it blue"}, {"assistant", "<image>"}}, {solid(64, 64, 255, 0, 0), solid(64, 64, 0, 0, 255)});
  auto gen = omni::generate::make_generator(torch::kCPU, 5);
  auto uniform = [&] { return omni::generate::uniform01(gen); };
  int dropped = 0, txt = 0;
  const int n = 4000;
  for (int k = 0; k < n; ++k) {
    auto v = u1::draw_condition_dropout(ex, kOfficial, uniform);
    if (!v) continue;
    ++dropped;
    txt += v->turns.front().content.num_images() == 1;  // txt keeps the source image
  }
  EXPECT_NEAR(dropped / double(n), 0.2, 0.02);   // 0.1 + 0 + 0.1
  EXPECT_NEAR(txt / double(dropped), 0.5, 0.06);  // txt : txtimg = 0.1 : 0.1
  (void)P;
}

TEST(U1TrainDropout, FinalInterleaveImageGetsItsCopyOneTimeInFive) {
  auto& P = parts();
  auto ex = example({{"user", "draw two"}, {"assistant", "One:<image>Two:<image>"}},
                    {solid(64, 64, 255, 0, 0), solid(64, 64, 0, 255, 0)});
  const u1::CondDropout none{0, 0, 0};
  EXPECT_FALSE(u1::draw_sample_variant(ex, none, draws({0.2})).has_value());  // >= 0.2: single
  auto v = u1::draw_sample_variant(ex, none, draws({0.1}));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->image_roles, (std::vector<std::string>{"gen+und", "gen+und"}));
  auto s = u1::build_train_sequence(*v, P.cfg, P.tok, P.ids);
  ASSERT_EQ(s.images.size(), 4u);  // noisy copy + clean copy, twice
  EXPECT_TRUE(s.images[2].gen);
  EXPECT_FALSE(s.images[3].gen);
  // after the clean copy, <|im_end|> and "\n" are targets (the model learns to stop after an image)
  EXPECT_NE(s.labels[s.labels.size() - 2], -100);
  EXPECT_NE(s.labels.back(), -100);
  auto single = u1::build_train_sequence(ex, P.cfg, P.tok, P.ids);
  EXPECT_EQ(single.images.size(), 3u);
  EXPECT_EQ(single.labels.back(), -100);  // everything from the single final image's </img> on
  // a text-dropped sample keeps it single and draws no copy; so does a sample with its own roles
  EXPECT_FALSE(u1::draw_sample_variant(ex, {1.0, 0, 0}, draws({0.0, 0.0}))->image_roles.size());
  ex.image_roles = {"gen+und", "gen"};
  EXPECT_FALSE(u1::draw_sample_variant(ex, none, draws({})).has_value());
  EXPECT_EQ(u1::build_train_sequence(ex, P.cfg, P.tok, P.ids).images.size(), 3u);
  ex.image_roles = {"gen", "gen"};  // given roles may also leave an earlier image without its copy
  auto bare = u1::build_train_sequence(ex, P.cfg, P.tok, P.ids);
  ASSERT_EQ(bare.images.size(), 2u);
  EXPECT_NE(bare.labels[bare.images[0].first_token + bare.images[0].tokens + 1], -100);  // "Two:" after it
  // roles are checked against where each image is
  ex.image_roles = {"und", "gen"};
  EXPECT_THROW(u1::build_train_sequence(ex, P.cfg, P.tok, P.ids), omni::Error);
  ex.image_roles = {"gen"};
  EXPECT_THROW(u1::build_train_sequence(ex, P.cfg, P.tok, P.ids), omni::Error);
  // rate
  auto gen = omni::generate::make_generator(torch::kCPU, 9);
  auto uniform = [&] { return omni::generate::uniform01(gen); };
  ex.image_roles.clear();
  int copied = 0;
  for (int k = 0; k < 4000; ++k) copied += u1::draw_sample_variant(ex, none, uniform).has_value();
  EXPECT_NEAR(copied / 4000.0, 0.2, 0.02);
}
