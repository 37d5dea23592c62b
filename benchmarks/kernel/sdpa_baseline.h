// torch's at::scaled_dot_product_attention on the same inputs as a longhaul kernel: the
// [T, H, D] tensors seen as [1, H, T, D] views, enable_gqa when H_kv < H, is_causal for the causal
// mask, and for masks SDPA cannot express the equivalent dense boolean mask
// (reference::visible_matrix). Backward through autograd.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "attention/mask.h"
#include "benchmarks/common/timing.h"

namespace longhaul::bench {

struct SdpaInputs {
  at::Tensor q, k, v, dout;  // [T, H, D], [T, H_kv, D], [T, H_kv, D], [T, H, D]
  std::string mask_name;     // see mask_cases.h
  const Mask* mask;          // the mask itself (for the dense boolean one)
};

// Medians (ms) of SDPA's forward and of forward + backward (timed together in one run; the
// forward runs with requires_grad, a training forward, also when only it is reported).
struct SdpaTimes {
  double forward_ms, forward_backward_ms;
};

SdpaTimes time_sdpa(const SdpaInputs& in, bool backward, const TimingPlan& plan);

}  // namespace longhaul::bench
