// Keeps the `omni` target non-empty so its precompiled header can be reused by other targets.
#include <torch/torch.h>
namespace omni { int torch_anchor() { return 0; } }
