// Time spent in the CP attention (forward and backward, its communication included), and the part
// of it this thread spent blocked on communication (comm_wait_seconds(): the exposed wait; the rest
// is compute, and transfers hidden behind it). The forward is timed around the call; the backward
// between two identity autograd nodes placed around it (the engine runs the attention's backward
// node between them: nothing else depends on the first one).
//
// On the CPU that is wall time. On a GPU the host only queues kernels, so the same points record
// CUDA events on the current stream instead, and settle() (after the step's device sync) adds
// the device time between them, communication included: a host-side wait means nothing there,
// so wait_s stays 0 and device_timed says so.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace longhaul::train {

struct AttentionClock {
  double forward_s = 0, backward_s = 0;
  double wait_s = 0;  // of forward_s + backward_s: blocked on communication (CPU only)
  bool device_timed = false;  // the last settle() read device events (a GPU run)
  std::chrono::steady_clock::time_point backward_begin;
  double backward_wait_begin = 0;
  // GPU: begin/end events of each forward call and each backward, and a backward's open begin.
  std::vector<std::pair<c10::Event, c10::Event>> forward_spans, backward_spans;
  std::optional<c10::Event> backward_open;

  void reset();
  // Adds the recorded spans' device time into forward_s / backward_s (waits on their end events).
  void settle();
};

// out = call(q, k, v), timed into clock (forward and, later, backward).
at::Tensor timed_attention(AttentionClock& clock, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>& call);

}  // namespace longhaul::train
