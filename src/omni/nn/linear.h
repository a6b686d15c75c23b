// Linear layers for the few-row case (decode steps, CFG pairs): OpenBLAS sgemm streams the
// weights at ~10 GB/s for 1-4 rows; linear_rows reads each weight once (AVX-512, else AVX2+FMA):
// Janus-Pro-7B's fp32 matrices at 26-32 GB/s for 1-2 rows on 2 cores. bf16 weights with 1-2 bf16
// rows go to linear_bf16_rows (AVX512-BF16 dot products, 25-42 GB/s against oneDNN's 21-28; the
// widening loops tried before it, 12-19 GB/s, lost to oneDNN); 3-4 bf16 rows stay with oneDNN.
//
// Weight-only int8 (--dtype int8): a quantized Linear keeps its `weight` as int8 [O, K] and a
// `weight_scale` buffer [O] (per output channel, symmetric: W ~= q * scale, |q| <= 127); the
// activations and the accumulation stay fp32. linear_rows reads the int8 rows directly for 1..4
// input rows and widens the weight block by block for larger batches (linear_widened).
// One row x 4096x12288 on 2 cores: int8 2.9-3.1 ms against oneDNN bf16's 3.9-4.6 ms; the loop is
// bound by widening (~15 G weights/s), and 64-byte loads or an int16 step measured no faster.
#pragma once
#include <torch/torch.h>

#include <string>

namespace omni::nn {

// == l->forward(x); takes the row loop for 1..4 rows of fp32 on the CPU without autograd.
// For an int8 `l` (decoder_linear under NarrowLinearBuild(Char), or quantize_linears_int8):
// x @ (q * scale)^T + b, in x's dtype. For a weight stored narrower than x (a bf16 lm_head under
// --dtype int8's fp32 compute): x @ W.to(x's dtype)^T + b, without a widened copy of W.
torch::Tensor linear_rows(torch::nn::Linear l, const torch::Tensor& x);
// The same over a bare weight (a tied lm_head: the embedding matrix); `scale` only for int8 W.
torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& scale,
                          const torch::Tensor& bias);
// linear_rows of several linears on the same x (a layer's q, k and v; gate and up): where each
// would take a few-row kernel, their weights are one range of output rows, read in one pass with
// one fork and join instead of one a linear; otherwise linear_rows on each. Equal to linear_rows
// on each, bit for bit.
std::vector<torch::Tensor> linear_rows_shared(const torch::Tensor& x, const std::vector<torch::nn::Linear>& ls);

// x @ (W * scale[:, None])^T (+ b) in x's dtype for a W stored in a narrower dtype (int8 with its
// per-row scale, or bf16 with an undefined scale) or in x's own (linear_rows' fp32 GEMMs of a few
// hundred rows: the same blocks without the widening): each thread widens blocks of output rows
// (widened_block_rows) into a buffer of its own and runs a one-thread GEMM per block into its
// columns of y. Whole-matrix widened temporaries (271 MB per BAGEL-7B MLP weight) are above
// glibc's mmap threshold, so every call page-faulted fresh memory: BAGEL-7B's int8 prefill spent
// a third of its time there. With autograd, off the CPU or for a non-contiguous W, the whole
// weight is widened and torch::linear used.
torch::Tensor linear_widened(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& scale,
                             const torch::Tensor& bias);
// The output rows of W [O, K] linear_widened widens and multiplies at a time for M rows of x.
int64_t widened_block_rows(int64_t M, int64_t K, int64_t O);

// An embedding lookup in `dtype`: the rows of a table stored narrower than the compute dtype
// (bf16 under --dtype int8) are widened after the gather, so only the looked-up rows are.
torch::Tensor embed_rows(const torch::nn::Embedding& table, const torch::Tensor& ids, c10::ScalarType dtype);

// --dtype int8 asks for int8 decoder-layer linears over fp32 compute. --dtype bf16 computes in bf16
// where the device has bf16 GEMM kernels (CUDA; a CPU with cpu_has_bf16_gemm, cpu_bf16.h); on a CPU
// without them it stores the decoder-layer linears bf16 and computes in fp32, the int8 way (bf16
// weights, half the bytes a decode step streams; fp32 GEMMs, which such a CPU runs fastest).
inline bool is_int8(c10::ScalarType t) { return t == c10::ScalarType::Char; }
// The dtype a model is built and run in for --dtype `t` on `device`.
c10::ScalarType compute_dtype(c10::ScalarType t, const c10::Device& device);
// The dtype its decoder-layer linears are stored in where narrower than compute_dtype (Char,
// BFloat16), else Undefined: the argument of NarrowLinearBuild.
c10::ScalarType narrow_linear_dtype(c10::ScalarType t, const c10::Device& device);

// Per-output-channel symmetric int8 of a float [O, K] weight: {q int8 [O, K], scale float32 [O]},
// scale = max|W[o]| / 127 (1 for an all-zero row), q = round(W / scale).
std::pair<torch::Tensor, torch::Tensor> quantize_rows_int8(const torch::Tensor& w);
// quantize_rows_int8 written into existing storage (the loader's int8 weight and its scale), with
// no whole-matrix temporary.
void quantize_rows_int8_into(const torch::Tensor& w, torch::Tensor q, torch::Tensor scale);
// q * scale[:, None] in `dtype`.
torch::Tensor dequantize_rows_int8(const torch::Tensor& q, const torch::Tensor& scale, c10::ScalarType dtype);

// A decoder layer's linear (attention q/k/v/o, MLP gate/up/down; both experts of a MoT). Inside
// a NarrowLinearBuild(Char) scope it is built int8 from the start: an uninitialised int8 [out, in]
// `weight` and a `weight_scale` [out] buffer, which load_module fills by quantizing the
// checkpoint's float weight (io/module_loader_torch.h), so no float copy of the decoder ever
// exists. Inside NarrowLinearBuild(BFloat16): an uninitialised bf16 weight (the bias in the
// default dtype) that load_module converts into. Otherwise a plain torch::nn::Linear in the
// default dtype. Either narrow weight computes through linear_rows in the default dtype.
torch::nn::Linear decoder_linear(int64_t in, int64_t out, bool bias);
// A linear of a vision tower, projector or image head, computed through linear_rows: a plain
// torch::nn::Linear in the default dtype (uninitialised inside an UninitialisedBuild), but inside
// NarrowLinearBuild(BFloat16) an uninitialised bf16 weight, as decoder_linear's: bf16 weights over
// fp32 compute (Janus-Pro-7B's SigLIP tower and image head: 1.7 -> 0.85 GB). int8 keeps these in
// the compute dtype: a few % of the bytes, and every token sees their error.
torch::nn::Linear tower_linear(int64_t in, int64_t out, bool bias = true);
// Inside a narrow scope nn::head_linear and nn::embedding_table (uninitialised.h) build bf16
// weights: vocabulary-sized tables that int8 would hurt most (the logits) and fp32 would double
// (BAGEL-7B: 4.4 GB for the two in fp32, 2.2 in bf16); linear_rows and embed_rows compute with
// them in the default dtype. Undefined: no scope (decoder_linear builds plain linears).
class NarrowLinearBuild {
 public:
  explicit NarrowLinearBuild(c10::ScalarType weights);  // Char, BFloat16 or Undefined (off)
  ~NarrowLinearBuild();  // bf16: logs how many decoder linears it built
  NarrowLinearBuild(const NarrowLinearBuild&) = delete;
  NarrowLinearBuild& operator=(const NarrowLinearBuild&) = delete;

 private:
  c10::ScalarType prev_;
  int64_t prev_built_, prev_towers_;
};
// The weight dtype of the innermost NarrowLinearBuild on this thread; Undefined outside one.
c10::ScalarType narrow_linear_build();

// Quantizes, in place, the weight of every torch::nn::Linear whose dotted name starts with
// `prefix` (e.g. "language_model.model.layers."); their forward must go through linear_rows.
// For a model already built with float weights (the benches' random ones); the CLI's models are
// built int8 instead (decoder_linear). Inference only: the int8 weights have no gradient.
struct Int8Report {
  int64_t linears = 0;
  int64_t bytes_before = 0, bytes_after = 0;  // the quantized weights (and scales) only
};
Int8Report quantize_linears_int8(torch::nn::Module& root, const std::string& prefix);
// The same for the bf16 weights a CPU without bf16 GEMM kernels runs --dtype bf16 with
// (narrow_linear_dtype): every such Linear's weight stored bf16 in place; returns how many.
int64_t narrow_linears_bf16(torch::nn::Module& root, const std::string& prefix);

// CPU inference of modules whose linears always see many rows (the vision towers). fp32: OpenBLAS's
// sgemm runs x @ W^T 3-10% faster at their shapes when W^T's storage is the contiguous one (the
// "NN" kernel) than with W's (NT): a whole SigLIP-L tower 2.20 -> 2.11 s on 2 cores, its output
// bit-identical with Debian's OpenBLAS. bf16 (where oneDNN is built in): linear_onednn.h packs
// such a weight at memory speed (onednn_pack.h), which pays from 384 rows; below that torch's
// linear runs it 0-9% slower than the loaded layout (NaViT's 1152 -> 4304 and back at 16-511 rows;
// level for 1152 -> 1152). Re-lays the weight of every fp32 CPU torch::nn::Linear under `root`,
// and of every bf16 one, as an [out, in] view of [in, out] storage: the same values, shape and dotted
// name, no extra memory. Inference only
// (omni infer / eval; models::LoadOptions::inference_only): a trainer's sharding and gradient
// buckets take the parameters as laid out at load. linear_rows' few-row kernels read row-major
// weights and leave these to torch's linear. Returns how many weights were re-laid.
int64_t store_linear_weights_transposed(torch::nn::Module& root);

// The int8 weight's per-channel scales, or an undefined tensor for a float Linear.
torch::Tensor int8_scale(const torch::nn::LinearImpl& l);

}  // namespace omni::nn
