#include "benchmarks/kernel/check.h"
#include "benchmarks/kernel/backends.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "core/errors.h"

namespace longhaul::bench {

Tolerance tolerance_for(at::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return {1e-9, 1e-9};
    case at::kFloat: return {2e-4, 2e-4};
    case at::kHalf: return {5e-3, 5e-3};
    case at::kBFloat16: return {3e-2, 3e-2};
    default: throw InvalidArgument(detail::str_cat("bench kernel: no tolerance for dtype ", dtype));
  }
}

int64_t count_outside(const at::Tensor& got, const at::Tensor& ref, const Tolerance& tol) {
  LH_CHECK(got.sizes() == ref.sizes(), "bench kernel check: result ", got.sizes(), " and reference ", ref.sizes(),
           " differ in shape");
  at::Tensor g = got.detach().to(at::kCPU).to(at::kDouble), r = ref.detach().to(at::kCPU).to(at::kDouble);
  at::Tensor finite = at::isfinite(r);
  const double scale = std::max(1.0, finite.any().item<bool>() ? r.masked_select(finite).abs().max().item<double>() : 0.0);
  at::Tensor ok = g.eq(r) | (g - r).abs().le(tol.atol * scale + tol.rtol * r.abs());
  return (~ok).sum().item<int64_t>();
}

CheckResult check_against_reference(const CheckCase& c) {
  auto gen = at::detail::createCPUGenerator(c.seed);
  auto normal = [&](int64_t t, int64_t h) {
    return at::randn({t, h, c.d}, gen, at::TensorOptions(at::kFloat)).to(c.dtype);
  };
  // Inputs rounded to the dtype once; the reference sees exactly these values.
  const at::Tensor q = normal(c.t, c.h), k = normal(c.t, c.h_kv), v = normal(c.t, c.h_kv), dout = normal(c.t, c.h);
  const BlockView view = BlockView::self(c.t);
  const Tolerance tol = tolerance_for(c.dtype);

  auto on_device = [&](const at::Tensor& x) { return x.to(c.device); };
  const KernelBackend kb = kernel_backend(c.backend);
  AttentionOutput got = kb.forward(on_device(q), on_device(k), on_device(v), view, c.mask);
  AttentionOutput ref = attention_forward(q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble), view, c.mask, 0,
                                          AttentionBackend::Reference);
  CheckResult result;
  result.wrong_forward = count_outside(got.out, ref.out, tol) + count_outside(got.lse, ref.lse, tol);
  if (c.backward) {
    AttentionGrads g = kb.backward(on_device(dout), on_device(q), on_device(k), on_device(v), got.out.to(c.dtype),
                                   got.lse, view, c.mask);
    AttentionGrads r = attention_backward(dout.to(at::kDouble), q.to(at::kDouble), k.to(at::kDouble),
                                          v.to(at::kDouble), ref.out, ref.lse, view, c.mask, 0,
                                          AttentionBackend::Reference);
    result.wrong_backward =
        count_outside(g.dq, r.dq, tol) + count_outside(g.dk, r.dk, tol) + count_outside(g.dv, r.dv, tol);
  }
  return result;
}

}  // namespace longhaul::bench
