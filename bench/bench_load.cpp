// Checkpoint load throughput: writes a >= 1 GB safetensors file (default 1.2 GB of BF16 and F32
// tensors), then measures open+validate, strict load into an fp32 module (BF16->F32 conversion
// and F32 copy), against the memory-copy bound measured here.
//   bench_load [--gb 1.2] [--dir /tmp]
#include <torch/torch.h>

#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "omni/core/progress.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/io/safetensors.h"

using namespace omni;
using clk = std::chrono::steady_clock;

namespace {
double secs(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

struct Blocks : torch::nn::Module {
  std::vector<torch::Tensor> ws;
  Blocks(int n, int64_t rows, int64_t cols) {
    for (int i = 0; i < n; ++i) ws.push_back(register_parameter("w" + std::to_string(i), torch::empty({rows, cols})));
  }
};

// Drop the file's pages from the page cache so the "cold" number reads from disk.
void drop_cache(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return;
  posix_fadvise(fileno(f), 0, 0, POSIX_FADV_DONTNEED);
  std::fclose(f);
}
}  // namespace

int main(int argc, char** argv) {
  double gb = 1.2;
  std::string dir = std::filesystem::temp_directory_path().string();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--gb")) gb = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
  }
  torch::InferenceMode guard(false);
  const int64_t rows = 4096, cols = 4096;  // 32 MiB per BF16 tensor, 64 MiB per F32 tensor
  const int64_t bytes_bf16 = rows * cols * 2;
  const int n = std::max(2, static_cast<int>(gb * 1e9 / bytes_bf16));
  const std::string path = dir + "/omni_bench_load.safetensors";
  const std::string path32 = dir + "/omni_bench_load_f32.safetensors";

  {
    auto src = torch::randn({rows, cols}).to(torch::kBFloat16);
    std::vector<io::RawTensor> raw;
    for (int i = 0; i < n; ++i) raw.push_back({"w" + std::to_string(i), DType::BF16, {rows, cols}, src.data_ptr()});
    io::write_safetensors(path, raw);
    auto src32 = torch::randn({rows, cols});
    std::vector<io::RawTensor> raw32;
    for (int i = 0; i < n / 2; ++i) raw32.push_back({"w" + std::to_string(i), DType::F32, {rows, cols}, src32.data_ptr()});
    io::write_safetensors(path32, raw32);
  }
  const double file_gb = std::filesystem::file_size(path) / 1e9;
  const double file32_gb = std::filesystem::file_size(path32) / 1e9;

  // Memory-copy bound: one pass over the same amount of data.
  double copy_gbs;
  {
    auto a = torch::ones({rows, cols * 4}), b = torch::empty_like(a);  // 256 MiB fp32
    b.copy_(a);
    auto t = clk::now();
    for (int i = 0; i < 4; ++i) b.copy_(a);
    copy_gbs = 4.0 * a.numel() * 4 / secs(t) / 1e9;
  }

  auto t = clk::now();
  auto ck = io::Checkpoint::open(path);
  const double open_s = secs(t);

  drop_cache(path);
  Blocks m(n, rows, cols);
  t = clk::now();
  auto rep_cold = io::load_module(m, ck);
  const double cold_s = secs(t);
  t = clk::now();
  auto rep = io::load_module(m, ck);
  const double warm_s = secs(t);

  auto ck32 = io::Checkpoint::open(path32);
  Blocks m32(n / 2, rows, cols);
  io::load_module(m32, ck32);
  t = clk::now();
  io::load_module(m32, ck32);
  const double warm32_s = secs(t);

  std::printf("\ncheckpoint load (%d x %lldx%lld tensors, %.2f GB BF16 file -> fp32 module; %.2f GB F32 file)\n", n,
              (long long)rows, (long long)cols, file_gb, file32_gb);
  std::printf("| stage                          | time (s) | GB/s (file bytes) | bound GB/s (memcpy) |\n");
  std::printf("|--------------------------------|---------:|------------------:|--------------------:|\n");
  std::printf("| open + validate header         | %8.4f |                 - |                   - |\n", open_s);
  std::printf("| load BF16->F32, cold page cache| %8.3f | %17.2f | %19.2f |\n", cold_s, file_gb / cold_s, copy_gbs);
  std::printf("| load BF16->F32, warm           | %8.3f | %17.2f | %19.2f |\n", warm_s, file_gb / warm_s, copy_gbs);
  std::printf("| load F32->F32, warm            | %8.3f | %17.2f | %19.2f |\n", warm32_s, file32_gb / warm32_s, copy_gbs);
  std::printf("peak RSS %s (%zu tensors loaded, %.2f GB read)\n", format_bytes(peak_rss_bytes()).c_str(),
              rep.tensors, rep.bytes_read / 1e9);
  (void)rep_cold;
  std::filesystem::remove(path);
  std::filesystem::remove(path32);
  return 0;
}
