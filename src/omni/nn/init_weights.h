// A new model's weights, drawn the way Hugging Face's PreTrainedModel._init_weights draws them for
// the decoder families here (Qwen2/Qwen3/Llama): every matrix (linear, embedding, and here also
// the patch convolutions) from N(0, initializer_range^2), every bias zero, every norm weight one.
// All draws come from the caller's generator, in the module's registration order, so one seed
// always gives the same model.
#pragma once
#include <torch/torch.h>

namespace omni::nn {

void init_weights_hf_style(torch::nn::Module& module, double initializer_range, at::Generator& gen);

}  // namespace omni::nn
