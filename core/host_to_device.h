// Index and offset tensors built on the host, moved to the device that uses them without stalling
// the host. A blocking copy from pageable memory waits for every kernel queued on the stream, so
// the host could not queue a ring step's next kernels while the GPU runs the current ones; a CPU
// tensor bound for a CUDA device is therefore staged in pinned memory and copied with
// non_blocking on the current stream (torch's pinned-memory allocator keeps the staging buffer
// until that copy has run).
#pragma once

#include <ATen/ATen.h>

namespace longhaul {

inline at::Tensor host_to_device(const at::Tensor& host, const at::Device& dev) {
  if (host.device() == dev) return host;
  if (!host.is_cpu() || !dev.is_cuda()) return host.to(dev);
  return host.pin_memory().to(host.options().device(dev), /*non_blocking=*/true);
}

}  // namespace longhaul
