// `--dtype` of `longhaul train`: what the parameters are kept in and what the step computes in.
//   fp32  float32 throughout (the default).
//   fp64  float64 throughout: the same model, for tests that compare devices exactly.
//   bf16  float32 master weights and optimiser state; each forward casts the weight matrices (and
//         the activations they multiply) to bfloat16 for the matmuls (the head's too: its logits
//         are cast to float32) and the attention, while the embedding, norms, residual stream,
//         loss and its softmax stay float32. Gradients reach
//         the float32 masters through the casts. No loss scaling: bfloat16 has float32's exponent
//         range, so gradients do not underflow as float16's do (float16 is not offered).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace longhaul::train {

enum class Precision { Fp32, Fp64, Bf16 };

Precision precision_from_string(const std::string& name);  // fp32, fp64, bf16; else InvalidArgument
const char* to_string(Precision p);

// Parameters, gradients and optimiser state: float64 for fp64, float32 otherwise.
at::ScalarType master_dtype(Precision p);
// The matmuls and the attention: bfloat16 for bf16, else the master dtype.
at::ScalarType compute_dtype(Precision p);

}  // namespace longhaul::train
