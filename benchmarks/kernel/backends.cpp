#include "benchmarks/kernel/backends.h"

#include <ATen/ATen.h>

#include <cmath>

#include "attention/chunked_math.h"
#include "core/errors.h"

namespace longhaul::bench {
namespace {

KernelBackend on_backend(AttentionBackend backend, c10::Device device) {
  return {device,
          [backend](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                    const Mask& mask) { return attention_forward(q, k, v, view, mask, 0, backend); },
          [backend](const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const at::Tensor& out, const at::Tensor& lse, const BlockView& view, const Mask& mask) {
            return attention_backward(dout, q, k, v, out, lse, view, mask, 0, backend);
          }};
}

KernelBackend exact(c10::Device device) {
  auto scale = [](const at::Tensor& q) { return 1.0 / std::sqrt(double(q.size(2))); };
  return {device,
          [scale](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                  const Mask& mask) { return chunked_math::forward(q, k, v, view, mask, scale(q)); },
          [scale](const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& out, const at::Tensor& lse, const BlockView& view, const Mask& mask) {
            return chunked_math::backward(dout, q, k, v, attention_row_sums(dout, out), lse, view, mask, scale(q));
          }};
}

}  // namespace

KernelBackend kernel_backend(const std::string& name) {
  const c10::Device cpu(c10::kCPU), gpu(c10::kCUDA, 0);
  if (name == "cpu") return on_backend(AttentionBackend::Cpu, cpu);
  if (name == "cuda") return on_backend(AttentionBackend::Cuda, gpu);
  if (name == "reference") return on_backend(AttentionBackend::Reference, cpu);
  if (name == "exact") return exact(cpu);
  if (name == "exact_cuda") return exact(gpu);
  throw InvalidArgument("bench kernel: unknown backend '" + name +
                        "', expected cpu, cuda, reference, exact or exact_cuda");
}

}  // namespace longhaul::bench
