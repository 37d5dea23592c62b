// The accumulate-type rule, written once: float64 inputs compute and accumulate in float64,
// every other dtype (float32, bfloat16, float16) in float32 — merges, LSE, gradients.
#pragma once

#include <ATen/core/Tensor.h>

namespace longhaul {

inline at::ScalarType accumulate_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }
inline at::ScalarType accumulate_type(const at::Tensor& t) { return accumulate_type(t.scalar_type()); }

}  // namespace longhaul
