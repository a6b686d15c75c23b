// Shared helpers for the SenseNova-U1 tests on tests/fixtures/u1_tiny: run a mode in-process on
// the tiny checkpoint and read what it traced.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/io/trace_torch.h"
#include "omni/models/registry.h"
#include "test_paths.h"

namespace omni::testing {

inline std::string u1_dir() { return std::string(OMNI_FIXTURES) + "/u1_tiny"; }

// A training conversation: (role, text with <image> markers) turns; images in marker order.
inline models::TrainExample train_conversation(const std::vector<std::pair<std::string, std::string>>& turns,
                                               const std::vector<io::Image>& imgs) {
  models::TrainExample ex;
  size_t next = 0;
  for (const auto& [role, text] : turns) {
    models::TrainTurn t;
    t.role = role;
    size_t at = 0;
    while (true) {
      const size_t m = text.find("<image>", at);
      const std::string piece = text.substr(at, m == std::string::npos ? std::string::npos : m - at);
      if (!piece.empty()) {
        generate::InputChunk c;
        c.text = piece;
        t.content.chunks.push_back(c);
      }
      if (m == std::string::npos) break;
      generate::InputChunk c;
      c.kind = generate::InputChunk::Kind::Image;
      c.image = imgs.at(next++);
      t.content.chunks.push_back(c);
      at = m + 7;
    }
    t.content.placed_by_markers = true;
    ex.turns.push_back(t);
  }
  return ex;
}

struct U1Fixture {
  io::Checkpoint ck;
  explicit U1Fixture(const std::string& file) : ck(io::Checkpoint::open(u1_dir() + "/" + file)) {}
  torch::Tensor operator()(const std::string& n) const { return ck.get(n).clone(); }
};

// Collects what a mode streams.
class CollectSink final : public models::OutputSink {
 public:
  void text(const std::string& piece) override { text_ += piece; }
  std::string image(const io::Image& img) override {
    images_.push_back(img);
    return "image" + std::to_string(images_.size());
  }
  std::string text_;
  std::vector<io::Image> images_;
};

struct U1Result {
  std::map<std::string, torch::Tensor> trace;
  std::string text;
  std::vector<io::Image> images;
  const torch::Tensor& operator[](const std::string& n) const {
    auto it = trace.find(n);
    if (it == trace.end()) throw std::runtime_error("not traced: " + n);
    return it->second;
  }
};

// The loaded tiny model, shared by the tests of one binary (loading is the slow part).
inline models::Model& u1_model() {
  static std::unique_ptr<models::Model> m = [] {
    models::register_builtin_models();
    models::LoadOptions lo;
    lo.path = u1_dir();
    return models::find_family("u1").load(lo);
  }();
  return *m;
}

inline U1Result run_u1(const std::string& mode, models::Request r, models::Model* model = nullptr) {
  models::register_builtin_models();
  const auto& fam = models::find_family("u1");
  r.input.decode_images(fam.read_image);
  fam.check(mode, r);
  io::Trace trace("unused.safetensors");  // enabled, never saved
  r.trace = &trace;
  CollectSink sink;
  models::run_mode(model ? *model : u1_model(), mode, r, sink);
  U1Result out;
  for (const auto& [n, t] : trace.tensors()) out.trace[n] = t;
  out.text = sink.text_;
  out.images = sink.images_;
  return out;
}

}  // namespace omni::testing
