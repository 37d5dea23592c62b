// The built-in checks of `longhaul bench kernel` (the `wrong` column): one configuration run at a
// small sequence length with a backend and with the float64 reference, and the configuration at
// its own size on sampled query rows; elements compared under a per-dtype tolerance.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "attention/attention.h"
#include "benchmarks/kernel/backends.h"

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
  std::string note;            // how the check ran where that is not the usual way (else empty)
};

CheckResult check_against_reference(const CheckCase& c);

// The configuration at its own size (a route can be right at the small check's length and wrong
// at 128K tokens: offsets, launch splits): the backend's forward (and backward) over the whole
// sequence on the given inputs, its out, lse (and dq) on `rows` query rows spread over the
// sequence (first and last included) against the float64 reference of those rows alone — their
// scores against every key, rows × T, computed on the inputs' device.
struct SampledRowsCase {
  KernelBackend backend;
  at::Tensor q, k, v, dout;  // [T, H|H_kv, D], on the backend's device, in the measured dtype
  Mask mask;
  bool backward = false;  // also dq (dk and dv need every row: the small check covers them)
  int64_t rows = 32;
};
CheckResult check_sampled_rows(const SampledRowsCase& c);

// Elements of `got` outside the tolerance around `ref` (any dtypes/devices; shapes must match).
int64_t count_outside(const at::Tensor& got, const at::Tensor& ref, const Tolerance& tol);

}  // namespace longhaul::bench
