// Wall time spent in the CP attention (forward and backward, its communication included), and the
// part of it this thread spent blocked on communication (comm_wait_seconds(): the exposed wait;
// the rest is compute, and transfers hidden behind it). The forward is timed around the call; the
// backward between two identity autograd nodes placed around it (the engine runs the attention's
// backward node between them: nothing else depends on the first one).
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <memory>

namespace longhaul::train {

struct AttentionClock {
  double forward_s = 0, backward_s = 0;
  double wait_s = 0;  // of forward_s + backward_s: blocked on communication
  std::chrono::steady_clock::time_point backward_begin;
  double backward_wait_begin = 0;
  void reset() { forward_s = backward_s = wait_s = 0; }
};

// out = call(q, k, v), timed into clock (forward and, later, backward).
at::Tensor timed_attention(AttentionClock& clock, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>& call);

}  // namespace longhaul::train
