// Dtype names of the benchmark options, the generator their inputs are drawn with, and the error
// measure their checks report.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>
#include <vector>

namespace longhaul::bench {

// "bf16", "fp16", "fp32", "fp64" (and the long names) among `allowed`; InvalidArgument naming
// `who` and the allowed names otherwise.
at::ScalarType dtype_from_name(const std::string& name, const std::vector<std::string>& allowed, const char* who);

// A generator seeded with `seed` that draws on `device`: the CPU's own, or on a GPU the device's
// (reseeded; its callers draw under it one at a time). The CPU's serial generator spends seconds
// per tensor at 128K tokens and several heads, inside a GPU run's time limits.
at::Generator seeded_generator(const c10::Device& device, uint64_t seed);

// max |got − ref| / max(floor, max |ref|), computed in float64 on got's device.
double relative_error(const at::Tensor& got, const at::Tensor& ref, double floor);

}  // namespace longhaul::bench
