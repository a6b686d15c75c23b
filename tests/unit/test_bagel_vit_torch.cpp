// BAGEL's SigLIP NaViT encoder, MLP connector, patchify / position ids and the sin-cos
// vit_pos_embed against the official fixtures (tests/fixtures/bagel_tiny: ema.safetensors,
// understanding.safetensors, edit.safetensors, train.safetensors; README sections 1, 3, 5).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "alignment_util.h"
#include "omni/core/error.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/hf_config.h"
#include "omni/io/module_loader_torch.h"
#include "omni/models/bagel/config.h"
#include "omni/models/bagel/vit_blocks.h"
#include "omni/nn/siglip_navit.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::testing;

namespace {
std::string bagel_dir() { return std::string(OMNI_FIXTURES) + "/bagel_tiny"; }

const io::Checkpoint& ema() {
  static io::Checkpoint ck = io::Checkpoint::open(bagel_dir() + "/ema.safetensors");
  return ck;
}
torch::Tensor und(const std::string& name) {
  static io::Checkpoint ck = io::Checkpoint::open(bagel_dir() + "/understanding.safetensors");
  return ck.get(name).clone();
}
torch::Tensor edit(const std::string& name) {
  static io::Checkpoint ck = io::Checkpoint::open(bagel_dir() + "/edit.safetensors");
  return ck.get(name).clone();
}
torch::Tensor train(const std::string& name) {
  static io::Checkpoint ck = io::Checkpoint::open(bagel_dir() + "/train.safetensors");
  return ck.get(name).clone();
}

io::HfConfig bagel_json() { return io::HfConfig::from_file(bagel_dir() + "/bagel_config.json").sub("bagel_config"); }
int64_t max_per_side() { return bagel_json().get<int64_t>("vit_max_num_patch_per_side"); }  // 8
int64_t llm_hidden() { return io::HfConfig::from_file(bagel_dir() + "/llm_config.json").get<int64_t>("hidden_size"); }
nn::SiglipVisionConfig vit_cfg() {
  const auto c = nn::SiglipVisionConfig::from_file(bagel_dir() + "/vit_config.json");
  return c.with_layers_built(bagel::vit_inference_layers(c.num_hidden_layers));
}

struct Parts {
  nn::SiglipVisionModel vit{nullptr};
  bagel::MLPconnector connector{nullptr};
  bagel::PositionEmbedding vit_pos_embed{nullptr};
};

Parts& parts() {
  static Parts p = [] {
    Parts q;
    auto c = vit_cfg();
    q.vit = nn::SiglipVisionModel(c);
    q.connector = bagel::MLPconnector(c.hidden_size, llm_hidden(), bagel_json().get<std::string>("connector_act"));
    q.vit_pos_embed = bagel::PositionEmbedding(max_per_side(), llm_hidden());
    auto r1 = io::load_module(*q.vit, ema(), {"vit_model."});
    auto r2 = io::load_module(*q.connector, ema(), {"connector."});
    auto r3 = io::load_module(*q.vit_pos_embed, ema(), {"vit_pos_embed."});
    EXPECT_EQ(r1.tensors, 37u);  // 3 embedding + 2 layers x 16 + 2 post_layernorm
    EXPECT_EQ(r2.tensors, 4u);
    EXPECT_EQ(r3.tensors, 1u);
    q.vit->eval();
    return q;
  }();
  return p;
}

struct BagelVit : ::testing::Test {
  void SetUp() override { torch::set_num_threads(1); }
  torch::NoGradGuard no_grad;
};
}  // namespace

TEST_F(BagelVit, ConfigAndLayerRule) {
  auto json = nn::SiglipVisionConfig::from_file(bagel_dir() + "/vit_config.json");
  EXPECT_EQ(json.hidden_size, 32);
  EXPECT_EQ(json.intermediate_size, 80);
  EXPECT_EQ(json.num_attention_heads, 2);
  EXPECT_EQ(json.head_dim(), 16);
  EXPECT_EQ(json.num_hidden_layers, 3);
  EXPECT_EQ(json.layers_built, 3);
  EXPECT_EQ(json.patch_size, 14);
  EXPECT_EQ(json.image_size, 112);
  EXPECT_EQ(json.num_positions(), 64);
  EXPECT_EQ(json.patch_dim(), 588);
  EXPECT_EQ(json.hidden_act, "gelu_pytorch_tanh");  // class default
  EXPECT_DOUBLE_EQ(json.layer_norm_eps, 1e-6);       // class default
  EXPECT_EQ(json.num_channels, 3);
  EXPECT_EQ(vit_cfg().layers_built, 2);  // app.py: num_hidden_layers -= 1
  EXPECT_EQ(bagel::vit_inference_layers(27), 26);
  EXPECT_EQ(bagel::vit_trainer_layers(27), 26);  // 27 + 1 + (-2)
  auto derived = io::HfConfig::from_file(bagel_dir() + "/bagel_config.json").sub("derived");
  EXPECT_EQ(vit_cfg().layers_built, derived.get<int64_t>("vit_layers_built"));
}

TEST_F(BagelVit, LoadsEveryTensorExactly) {
  auto& p = parts();
  size_t n = 0;
  auto check_all = [&](torch::nn::Module& m, const std::string& prefix) {
    for (auto& [name, t] : io::named_state(m)) {
      ASSERT_TRUE(ema().contains(prefix + name)) << prefix + name;
      EXPECT_TRUE(torch::equal(t, ema().get(prefix + name, torch::kFloat32))) << prefix + name;
      ++n;
    }
  };
  check_all(*p.vit, "vit_model.");
  check_all(*p.connector, "connector.");
  check_all(*p.vit_pos_embed, "vit_pos_embed.");
  EXPECT_EQ(n, 42u);
  size_t in_file = 0;
  for (auto& info : ema().tensors())
    if (info.name.rfind("vit_model.", 0) == 0 || info.name.rfind("connector.", 0) == 0 ||
        info.name.rfind("vit_pos_embed.", 0) == 0)
      ++in_file;
  EXPECT_EQ(in_file, n);
  EXPECT_FALSE(p.vit_pos_embed->pos_embed.requires_grad());  // frozen, as the official Parameter
}

TEST_F(BagelVit, StrictLoadRejectsJsonLayerCount) {
  // Building the json's 3 layers (without app.py's "- 1") must fail on the absent layers.2.
  nn::SiglipVisionModel m(nn::SiglipVisionConfig::from_file(bagel_dir() + "/vit_config.json"));
  try {
    io::load_module(*m, ema(), {"vit_model."});
    FAIL() << "expected omni::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.2"), std::string::npos) << e.what();
  }
}

TEST_F(BagelVit, PatchifyUnderstandingExact) {
  auto px = und("vit_pixel_values");  // [3, 70, 84]
  auto tokens = bagel::patchify(px, 14);
  auto want = und("packed_vit_tokens");
  ASSERT_EQ(tokens.sizes(), want.sizes());
  EXPECT_TRUE(torch::equal(tokens, want));
  // one element by hand: patch (row 1, col 2), in-patch (3, 5), channel 2
  const int64_t p = 14;
  EXPECT_EQ(tokens[1 * 6 + 2][(3 * p + 5) * 3 + 2].item<float>(), px[2][1 * p + 3][2 * p + 5].item<float>());
  EXPECT_THROW(bagel::patchify(px.narrow(1, 0, 69), 14), Error);
}

TEST_F(BagelVit, PositionIds) {
  const int64_t M = max_per_side();
  // understanding: 70x84 (HxW) -> 5 x 6 patches; edit: 98x70 -> 7 x 5
  expect_equal_ints("und/packed_vit_position_ids", bagel::flattened_position_ids_extrapolate(5, 6, M),
                    und("packed_vit_position_ids"));
  expect_equal_ints("edit/packed_vit_position_ids", bagel::flattened_position_ids_extrapolate(7, 5, M),
                    edit("packed_vit_position_ids"));
  EXPECT_EQ(bagel::flattened_position_ids_extrapolate(5, 6, M).scalar_type(), torch::kInt64);
  EXPECT_THROW(bagel::flattened_position_ids_extrapolate(9, 2, M), Error);
  // the training batch's two ViT images (sizes not stored: each must be some h x w extrapolate grid)
  auto ids = train("packed_vit_position_ids");
  auto lens = train("vit_token_seqlens");
  int64_t off = 0;
  for (int64_t i = 0; i < lens.numel(); ++i) {
    const int64_t n = lens[i].item<int64_t>();
    auto seg = ids.narrow(0, off, n);
    const int64_t last = seg[n - 1].item<int64_t>();
    const int64_t h = last / M + 1, w = last % M + 1;
    ASSERT_EQ(h * w, n) << "image " << i;
    expect_equal_ints("train/packed_vit_position_ids." + std::to_string(i),
                      bagel::flattened_position_ids_extrapolate(h, w, M), seg);
    off += n;
  }
  // interpolate mode (not used by the fixtures): a side of exactly M patches maps 1:1, a side
  // of 1 patch to bucket 0.
  auto ip = bagel::flattened_position_ids_interpolate(M, 1, M);
  EXPECT_TRUE(torch::equal(ip, torch::arange(M, torch::kInt64) * M)) << ip;
  auto ip2 = bagel::flattened_position_ids_interpolate(2, 4, M);  // rows {0, 4}, cols {0, 2, 4, 6}
  EXPECT_TRUE(torch::equal(ip2, torch::tensor({0, 2, 4, 6, 32, 34, 36, 38}, torch::kInt64))) << ip2;
}

TEST_F(BagelVit, PackVitImagesUnderstanding) {
  auto packed = bagel::pack_vit_images({und("vit_pixel_values")}, 14, max_per_side());
  EXPECT_TRUE(torch::equal(packed.tokens, und("packed_vit_tokens")));
  EXPECT_TRUE(torch::equal(packed.position_ids, und("packed_vit_position_ids")));
  ASSERT_EQ(packed.seqlens.size(), 1u);
  EXPECT_EQ(packed.seqlens[0], und("vit_token_seqlens")[0].item<int64_t>());
}

TEST_F(BagelVit, VitModelOutUnderstanding) {
  auto& p = parts();
  auto cu = nn::cu_seqlens_from_lengths({und("vit_token_seqlens")[0].item<int64_t>()});
  auto out = p.vit->forward(und("packed_vit_tokens"), und("packed_vit_position_ids"), cu);
  expect_close("und/vit_model_out", out, und("vit_model_out"), 1e-4);
  // cu_seqlens as the official int32 tensor works the same
  auto cu32 = torch::tensor({0, 30}, torch::kInt32);
  EXPECT_TRUE(torch::equal(p.vit->forward(und("packed_vit_tokens"), und("packed_vit_position_ids"), cu32), out));
}

TEST_F(BagelVit, VitModelOutEdit) {
  auto& p = parts();
  auto out = p.vit->forward_seqlens(edit("packed_vit_tokens"), edit("packed_vit_position_ids"), {35});
  expect_close("edit/vit_model_out", out, edit("vit_model_out"), 1e-4);
}

TEST_F(BagelVit, VarlenPackOfTwoImages) {
  // The understanding and edit images packed into one NaViT batch: attention stays within each
  // image, so each half must match its own fixture.
  auto& p = parts();
  auto tokens = torch::cat({und("packed_vit_tokens"), edit("packed_vit_tokens")}, 0);
  auto ids = torch::cat({und("packed_vit_position_ids"), edit("packed_vit_position_ids")}, 0);
  auto out = p.vit->forward(tokens, ids, torch::tensor({0, 30, 65}, torch::kInt32));
  expect_close("pack/und", out.narrow(0, 0, 30), und("vit_model_out"), 1e-4);
  expect_close("pack/edit", out.narrow(0, 30, 35), edit("vit_model_out"), 1e-4);
  // one segment over both images is a different computation
  auto mixed = p.vit->forward_seqlens(tokens, ids, {65});
  EXPECT_GT((mixed.narrow(0, 0, 30) - und("vit_model_out")).abs().max().item<double>(), 1e-3);
  // varlen_full_attention vs a dense block-masked reference
  torch::manual_seed(7);
  auto q = torch::randn({65, 2, 16}), k = torch::randn({65, 2, 16}), v = torch::randn({65, 2, 16});
  auto got = nn::varlen_full_attention(q, k, v, {30, 0, 35});
  auto seg = torch::cat({torch::zeros({30}, torch::kLong), torch::ones({35}, torch::kLong)});
  auto mask = seg.unsqueeze(0) != seg.unsqueeze(1);  // [65, 65] true = blocked
  auto s = torch::matmul(q.transpose(0, 1), k.transpose(0, 1).transpose(1, 2)) / 4.0;
  s = s.masked_fill(mask, -std::numeric_limits<float>::infinity());
  auto ref = torch::matmul(torch::softmax(s, -1), v.transpose(0, 1)).transpose(0, 1);
  expect_close("varlen vs dense mask", got, ref, 1e-6);
  // the query-chunked path (one query row per chunk) gives the same numbers up to float rounding
  auto chunked = nn::varlen_full_attention(q, k, v, {30, 0, 35}, -1, /*max_score_bytes=*/1);
  expect_close("varlen chunked", chunked, got, 1e-6);
  EXPECT_THROW(nn::varlen_full_attention(q, k, v, {30, 30}), Error);
}

TEST_F(BagelVit, ConnectorOutUnderstanding) {
  auto& p = parts();
  auto out = p.connector->forward(und("vit_model_out"));
  expect_close("und/connector_out (from fixture vit_model_out)", out, und("connector_out"), 1e-4);
  auto chained = p.connector->forward(
      p.vit->forward_seqlens(und("packed_vit_tokens"), und("packed_vit_position_ids"), {30}));
  expect_close("und/connector_out (chained)", chained, und("connector_out"), 1e-4);
}

TEST_F(BagelVit, VitBlockLlmInputIsConnectorPlusPosEmbed) {
  auto& p = parts();
  auto ids = und("packed_vit_position_ids");
  auto want = und("vit_block_llm_input").narrow(0, 1, 30);  // between <|vision_start|> and <|vision_end|>
  expect_close("und/vit_block_llm_input[1:-1] = connector_out + pos", und("connector_out") + p.vit_pos_embed->forward(ids),
               want, 1e-5);
  auto full = bagel::embed_vit_tokens(*p.vit, *p.connector, *p.vit_pos_embed, und("packed_vit_tokens"), ids, {30});
  expect_close("und/vit_block_llm_input[1:-1] (embed_vit_tokens)", full, want, 1e-4);
}

TEST_F(BagelVit, SinCosTableMatchesStored) {
  const int64_t G = max_per_side(), D = llm_hidden();
  auto table = bagel::sincos_pos_embed_2d(D, G);
  ASSERT_EQ(table.sizes(), (std::vector<int64_t>{G * G, D}));
  EXPECT_EQ(table.scalar_type(), torch::kFloat32);
  auto stored_bf16 = ema().get("vit_pos_embed.pos_embed");
  ASSERT_EQ(stored_bf16.scalar_type(), torch::kBFloat16);
  auto stored = stored_bf16.to(torch::kFloat32);
  expect_close("sincos fp32 vs stored bf16", table, stored, 2e-3);
  // the stored table is exactly our float32 table rounded to bf16
  expect_close("bf16(sincos fp32) vs stored bf16", table.to(torch::kBFloat16).to(torch::kFloat32), stored, 0);
  // layout: row r*G + c = [sin(c w), cos(c w), sin(r w), cos(r w)], w_k = 10000^(-k/(D/4))
  const int64_t r = 3, c = 5, q = D / 4, k = 2;
  const double w = std::pow(10000.0, -static_cast<double>(k) / q);
  auto row = table[r * G + c];
  EXPECT_FLOAT_EQ(row[k].item<float>(), static_cast<float>(std::sin(c * w)));
  EXPECT_FLOAT_EQ(row[q + k].item<float>(), static_cast<float>(std::cos(c * w)));
  EXPECT_FLOAT_EQ(row[2 * q + k].item<float>(), static_cast<float>(std::sin(r * w)));
  EXPECT_FLOAT_EQ(row[3 * q + k].item<float>(), static_cast<float>(std::cos(r * w)));
  // a freshly built module holds the float32 table; reset_sincos restores it after loading
  bagel::PositionEmbedding pe(G, D);
  EXPECT_TRUE(torch::equal(pe->pos_embed, table));
  io::load_module(*pe, ema(), {"vit_pos_embed."});
  EXPECT_TRUE(torch::equal(pe->pos_embed, stored));
  pe->reset_sincos();
  EXPECT_TRUE(torch::equal(pe->pos_embed, table));
  // latent_pos_embed uses the same table (max_latent_size 8, LLM hidden)
  expect_close("bf16(sincos) vs stored latent_pos_embed",
               table.to(torch::kBFloat16).to(torch::kFloat32), ema().get("latent_pos_embed.pos_embed", torch::kFloat32), 0);
}

TEST_F(BagelVit, ActivationNames) {
  auto x = torch::linspace(-3, 3, 13);
  EXPECT_TRUE(torch::allclose(nn::hf_activation("gelu_pytorch_tanh", x),
                              0.5 * x * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3)))), 1e-6, 1e-6));
  // bf16: the exact tanh-GELU of the bf16 input rounded once to bf16 (as on a GPU), up to the
  // rare element where fp32 then bf16 rounds apart from exact then bf16 (|x| <= 3: no fp32
  // cancellation in 1 + tanh worth a bf16 step)
  const auto xb = (torch::randn({4096}) * 1.5).clamp(-3, 3).to(torch::kBFloat16);
  const auto xd = xb.to(torch::kDouble);
  const auto exact = 0.5 * xd * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (xd + 0.044715 * xd.pow(3))));
  const auto got = nn::hf_activation("gelu_new", xb);
  ASSERT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_GT(got.eq(exact.to(torch::kBFloat16)).to(torch::kDouble).mean().item<double>(), 0.99);
  EXPECT_TRUE(((got.to(torch::kDouble) - exact).abs() <= exact.abs() / 256 + 1e-30).all().item<bool>());
  // SiLU of bf16 likewise (libtorch 1.13's bf16 kernel rounded 29% of these otherwise); the
  // Llama / MoT MLP takes the same route (LlamaMlp.Bf16SiluIsRoundedOnce)
  const auto silu_exact = (xd / (1 + torch::exp(-xd))).to(torch::kBFloat16);
  const auto silu = nn::hf_activation("silu", xb);
  ASSERT_EQ(silu.scalar_type(), torch::kBFloat16);
  EXPECT_GT(silu.eq(silu_exact).to(torch::kDouble).mean().item<double>(), 0.99);
  EXPECT_THROW(nn::check_hf_activation("nope", "test"), Error);
  EXPECT_THROW(bagel::MLPconnector(4, 4, "nope"), Error);
}

TEST_F(BagelVit, BackwardThroughPackedBatch) {
  // Training runs the ViT with autograd on a packed batch (train.safetensors: 2 images).
  torch::AutoGradMode grad_on(true);
  nn::SiglipVisionModel m(vit_cfg());
  io::load_module(*m, ema(), {"vit_model."});
  auto lens = train("vit_token_seqlens");
  std::vector<int64_t> seqlens{lens[0].item<int64_t>(), lens[1].item<int64_t>()};
  auto out = m->forward_seqlens(train("packed_vit_tokens"), train("packed_vit_position_ids"), seqlens);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{44, 32}));
  (out * torch::linspace(-1, 1, out.numel()).reshape(out.sizes())).sum().backward();
  auto& l0 = m->vision_model->encoder->layer_ptrs[0];
  ASSERT_TRUE(l0->self_attn->q_proj->bias.grad().defined());
  EXPECT_GT(l0->self_attn->q_proj->bias.grad().abs().max().item<double>(), 1e-6);
  // k_proj.bias only shifts every score of a query row by a constant: softmax-invariant, its
  // gradient is mathematically zero (the README lists it as rounding noise)
  EXPECT_LT(l0->self_attn->k_proj->bias.grad().abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(m->vision_model->embeddings->patch_embedding->weight.grad().defined());
}
