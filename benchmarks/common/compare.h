// Dtype names of the benchmark options and the error measure their checks report.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace longhaul::bench {

// "bf16", "fp16", "fp32", "fp64" (and the long names) among `allowed`; InvalidArgument naming
// `who` and the allowed names otherwise.
at::ScalarType dtype_from_name(const std::string& name, const std::vector<std::string>& allowed, const char* who);

// max |got − ref| / max(floor, max |ref|), computed in float64 on got's device.
double relative_error(const at::Tensor& got, const at::Tensor& ref, double floor);

}  // namespace longhaul::bench
