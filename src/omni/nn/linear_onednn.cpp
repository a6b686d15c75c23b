// See linear_onednn.h.
#include "omni/nn/linear_onednn.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <unordered_map>

#ifdef OMNI_HAVE_ONEDNN
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/onednn_util.h"
#endif

namespace omni::nn::detail {

namespace {
// Below these the reorder costs more than the packed kernel gains: the checkpoint's [N, K] layout
// packs at ~4 GB/s, the weights store_linear_weights_transposed re-lays 2-6x faster.
constexpr int64_t kMinRows = 1024, kMinRowsTransposed = 512;
}  // namespace

bool onednn_built() {
#ifdef OMNI_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

at::Tensor bf16_linear_packed(const at::Tensor& x, const at::Tensor& W, const at::Tensor& bias) {
#ifdef OMNI_HAVE_ONEDNN
  using dnnl::memory;
  const auto bf16 = at::kBFloat16;
  if (x.scalar_type() != bf16 || W.scalar_type() != bf16 || !x.device().is_cpu() || !W.device().is_cpu() ||
      !cpu_has_bf16_gemm() || c10::GradMode::is_enabled() || x.dim() < 2 || W.dim() != 2 || x.size(-1) != W.size(1) ||
      !(W.is_contiguous() || W.t().is_contiguous()) ||
      (bias.defined() && (bias.scalar_type() != bf16 || bias.dim() != 1 || bias.size(0) != W.size(0) ||
                          !bias.is_contiguous())))
    return {};
  const int64_t K = W.size(1), N = W.size(0), M = x.numel() / std::max<int64_t>(1, K);
  const bool transposed = !W.is_contiguous();  // [N, K] over [K, N] storage
  if (M < (transposed ? kMinRowsTransposed : kMinRows) || K == 0 || N == 0) return {};
  try {
    const auto dt = memory::data_type::bf16;
    const auto& eng = onednn::cpu_engine();
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // callers on several threads stay safe
    const auto w_layout = transposed ? memory::format_tag::ab : memory::format_tag::ba;  // Wᵀ [K, N] as stored
    const memory::desc x_md({M, K}, dt, memory::format_tag::ab), w_plain({K, N}, dt, w_layout),
        w_any({K, N}, dt, memory::format_tag::any), y_md({M, N}, dt, memory::format_tag::ab);
    const auto pd = bias.defined()
                        ? onednn::matmul_pd(x_md, w_any, memory::desc({1, N}, dt, memory::format_tag::ab), y_md, attr)
                        : onednn::matmul_pd(x_md, w_any, y_md, attr);
    const dnnl::reorder::primitive_desc pack_pd(eng, w_plain, eng, pd.weights_desc(), attr);
    const auto byte = at::TensorOptions().dtype(at::kByte);
    auto packed = at::empty({static_cast<int64_t>(pd.weights_desc().get_size())}, byte);
    auto scratch = at::empty({static_cast<int64_t>(std::max(pd.scratchpad_desc().get_size(),
                                                            pack_pd.scratchpad_desc().get_size()) + 64)}, byte);
    const at::Tensor xc = x.reshape({M, K}).contiguous();
    auto y = at::empty({M, N}, x.options());
    dnnl::stream stream(eng);
    memory w_mem(w_plain, eng, W.data_ptr()), packed_mem(pd.weights_desc(), eng, packed.data_ptr());
    const memory pack_scratch(pack_pd.scratchpad_desc(), eng, scratch.data_ptr());
    dnnl::reorder(pack_pd).execute(
        stream, {{DNNL_ARG_FROM, w_mem}, {DNNL_ARG_TO, packed_mem}, {DNNL_ARG_SCRATCHPAD, pack_scratch}});
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(x_md, eng, xc.data_ptr())},
                                         {DNNL_ARG_WEIGHTS, packed_mem},
                                         {DNNL_ARG_DST, memory(y_md, eng, y.data_ptr())},
                                         {DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), eng, scratch.data_ptr())}};
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, memory(pd.bias_desc(), eng, bias.data_ptr()));
    dnnl::matmul(pd).execute(stream, args);
    stream.wait();
    auto sizes = x.sizes().vec();
    sizes.back() = N;
    return y.view(sizes);
  } catch (const dnnl::error&) {
    return {};
  }
#else
  (void)x, (void)W, (void)bias;
  return {};
#endif
}

}  // namespace omni::nn::detail
