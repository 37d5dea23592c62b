// The built-in check of `longhaul bench kernel` (the `wrong` column): one configuration run at a
// small sequence length with a backend and with the float64 reference, elements compared under a
// per-dtype tolerance.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "attention/attention.h"

namespace longhaul::bench {

// |x − ref| <= atol · max(1, max|ref|) + rtol · |ref| elementwise (equal infinities match).
struct Tolerance {
  double atol, rtol;
};
// float64 1e-9; float32 2e-4; float16 5e-3; bfloat16 3e-2 (atol = rtol).
Tolerance tolerance_for(at::ScalarType dtype);

struct CheckCase {
  std::string backend;  // a name kernel_backend takes
  c10::Device device;
  at::ScalarType dtype;
  int64_t t, h, h_kv, d;
  Mask mask;                  // over t tokens
  bool backward = false;      // also compare dq, dk, dv
  uint64_t seed = 7;
};

struct CheckResult {
  int64_t wrong_forward = 0;   // out and lse elements outside the tolerance
  int64_t wrong_backward = 0;  // dq, dk and dv elements outside it (0 without backward)
};

CheckResult check_against_reference(const CheckCase& c);

// Elements of `got` outside the tolerance around `ref` (any dtypes/devices; shapes must match).
int64_t count_outside(const at::Tensor& got, const at::Tensor& ref, const Tolerance& tol);

}  // namespace longhaul::bench
