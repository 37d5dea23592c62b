// The kernels `bench kernel` times and checks, by backend name. cpu, cuda and reference are
// attention_forward / attention_backward on that backend; exact (CPU tensors) and exact_cuda (the
// GPU) run the exact chunked path alone (attention/chunked_math.h: what the CUDA backend runs
// where no fused kernel takes a block), its backward from the row sums as TokenRing calls it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <string>

#include "attention/attention.h"

namespace longhaul::bench {

struct KernelBackend {
  c10::Device device;
  std::function<AttentionOutput(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView&,
                                const Mask&)>
      forward;
  // out and lse: forward's (out in the input dtype).
  std::function<AttentionGrads(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& out, const at::Tensor& lse, const BlockView&, const Mask&)>
      backward;
  bool needs_cuda() const { return device.is_cuda(); }
};

// InvalidArgument naming the known backends for any other name.
KernelBackend kernel_backend(const std::string& name);

}  // namespace longhaul::bench
