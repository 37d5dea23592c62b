#include "benchmarks/kernel/check.h"
#include "benchmarks/kernel/backends.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <vector>

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

CheckResult check_sampled_rows(const SampledRowsCase& c) {
  const int64_t t = c.q.size(0), n = std::min(c.rows, t);
  LH_CHECK(n > 0, "bench kernel check: no rows to sample (T = ", t, ", rows = ", c.rows, ")");
  std::vector<int64_t> picked(n);
  for (int64_t j = 0; j < n; ++j) picked[j] = n == 1 ? t - 1 : j * (t - 1) / (n - 1);
  const at::Tensor pos = at::tensor(picked, at::kLong), at_dev = pos.to(c.q.device());
  const BlockView all = BlockView::self(t), sampled{pos, all.k_pos};
  const Tolerance tol = tolerance_for(c.q.scalar_type());
  auto rows_of = [&](const at::Tensor& x, int64_t dim) { return x.index_select(dim, at_dev); };

  const KernelBackend& kb = c.backend;
  const AttentionOutput got = kb.forward(c.q, c.k, c.v, all, c.mask);
  AttentionGrads g;
  // .to: the reference backend returns float64 out whatever the input dtype (a no-op otherwise).
  if (c.backward) g = kb.backward(c.dout, c.q, c.k, c.v, got.out.to(c.q.scalar_type()), got.lse, all, c.mask);

  // The sampled rows' reference: out and lse, and dq, which needs only their own dO, out and lse
  // (with every key). On the inputs' device; on the CPU if that device cannot run it (slower:
  // K and V copied over).
  struct Reference {
    AttentionOutput f;
    at::Tensor dq;
  };
  auto reference_on = [&](const c10::Device& dev) {
    auto there = [&](const at::Tensor& x) { return x.to(dev).to(at::kDouble); };
    const at::Tensor q_rows = there(rows_of(c.q, 0)), k64 = there(c.k), v64 = there(c.v);
    Reference r{attention_forward(q_rows, k64, v64, sampled, c.mask, 0, AttentionBackend::Reference), {}};
    if (c.backward)
      r.dq = attention_backward(there(rows_of(c.dout, 0)), q_rows, k64, v64, r.f.out, r.f.lse, sampled, c.mask, 0,
                                AttentionBackend::Reference)
                 .dq;
    return r;
  };
  Reference ref;
  CheckResult result;
  try {
    ref = reference_on(c.q.device());
  } catch (const std::exception& e) {
    if (c.q.device().is_cpu()) throw;
    std::string why = e.what();
    result.note = "check at size: reference on the CPU (" + why.substr(0, why.find('\n')) + ")";
    ref = reference_on(at::kCPU);
  }
  result.wrong_forward =
      count_outside(rows_of(got.out, 0), ref.f.out, tol) + count_outside(rows_of(got.lse, 1), ref.f.lse, tol);
  if (c.backward) result.wrong_backward = count_outside(rows_of(g.dq, 0), ref.dq, tol);
  return result;
}

}  // namespace longhaul::bench
