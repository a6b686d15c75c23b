// Precompiled header for the libtorch side of the library. Only translation units of the
// `omni` target (and targets that REUSE_FROM it) see this; torch-free code lives in omni_base.
#pragma once
#include <torch/torch.h>
