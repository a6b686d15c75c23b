#include "omni/train/metrics.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "omni/core/error.h"

namespace omni::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string StepMetrics::to_json() const {
  json j = {{"step", step},
            {"loss", loss},
            {"ce_loss", ce_loss},
            {"gen_loss", gen_loss},
            {"lr", lr},
            {"grad_norm", grad_norm},
            {"tokens", tokens},
            {"ce_tokens", ce_tokens},
            {"gen_tokens", gen_tokens},
            {"tokens_per_s", tokens_per_s},
            {"step_time_s", step_time_s},
            {"peak_rss_mib", peak_rss_mib}};
  j["setup_rss_mib"] = setup_rss_mib;
  j["state_mib"] = state_mib;
  j["comm_s"] = comm_s;
  return j.dump();
}

uint32_t crc32c(const void* data, size_t n) {
  static uint32_t table[256];
  static bool ready = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)ready;
  uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

namespace {
uint32_t masked_crc(const void* d, size_t n) {
  const uint32_t c = crc32c(d, n);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}
// Protocol-buffer wire format pieces.
void varint(std::string& s, uint64_t v) {
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
}
template <typename T>
void fixed(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  s.append(b, sizeof(T));
}
void bytes_field(std::string& s, int field, const std::string& payload) {
  varint(s, static_cast<uint64_t>(field) << 3 | 2);
  varint(s, payload.size());
  s += payload;
}
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
// Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 | summary = 5 }
std::string event_header(int64_t step) {
  std::string e;
  varint(e, 1 << 3 | 1);
  fixed(e, now_seconds());
  varint(e, 2 << 3 | 0);
  varint(e, static_cast<uint64_t>(step));
  return e;
}
}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = (fs::path(dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) + "." + host +
                             ".omni"))
              .string();
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) throw Error(path_, "cannot write the TensorBoard event file");
  std::string e = event_header(0);
  bytes_field(e, 3, "brain.Event:2");
  record(e);
}

void TensorBoardWriter::record(const std::string& event) {
  std::string frame;
  const uint64_t len = event.size();
  fixed(frame, len);
  fixed(frame, masked_crc(&len, sizeof len));
  frame += event;
  fixed(frame, masked_crc(event.data(), event.size()));
  out_.write(frame.data(), static_cast<std::streamsize>(frame.size()));
  out_.flush();
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  // Summary { repeated Value value = 1 }; Value { string tag = 1; float simple_value = 2 }
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    bytes_field(value, 1, tag);
    varint(value, 2 << 3 | 5);
    fixed(value, static_cast<float>(v));
    bytes_field(summary, 1, value);
  }
  std::string e = event_header(step);
  bytes_field(e, 5, summary);
  record(e);
}

MetricsLog::MetricsLog(const std::string& output_dir, int64_t resumed_step) : tb_(output_dir) {
  const fs::path p = fs::path(output_dir) / "metrics.jsonl";
  std::vector<std::string> keep;
  if (resumed_step > 0) {
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
      try {
        const json j = json::parse(line);
        if (j.value("step", int64_t{0}) > resumed_step) continue;
        StepMetrics m;
        m.step = j.value("step", int64_t{0});
        m.loss = j.value("loss", 0.0);
        m.ce_loss = j.value("ce_loss", 0.0);
        m.gen_loss = j.value("gen_loss", 0.0);
        m.lr = j.value("lr", 0.0);
        history_.push_back(m);
        keep.push_back(line);
      } catch (const json::exception&) {  // a torn last line from a killed run
      }
    }
  }
  jsonl_.open(p, std::ios::trunc);
  if (!jsonl_) throw Error(p.string(), "cannot write");
  for (const auto& l : keep) jsonl_ << l << "\n";
  jsonl_.flush();
}

void MetricsLog::add(const StepMetrics& m) {
  jsonl_ << m.to_json() << "\n";
  jsonl_.flush();
  tb_.scalars(m.step, {{"train/loss", m.loss},
                       {"train/ce_loss", m.ce_loss},
                       {"train/gen_loss", m.gen_loss},
                       {"train/lr", m.lr},
                       {"train/grad_norm", m.grad_norm},
                       {"train/tokens_per_s", m.tokens_per_s}});
  history_.push_back(m);
}

}  // namespace omni::train
