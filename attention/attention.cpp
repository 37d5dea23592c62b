// API boundary: argument checks with clear messages, then dispatch to a backend.
#include "attention/attention.h"
#include "core/dtypes.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "attention/cpu/entry.h"
#include "attention/reference.h"
#include "attention/simulated.h"
#include "longhaul/config.h"
#include "core/aten_boundary.h"
#include "core/errors.h"
#include "core/vector_math_warmup.h"
#if LONGHAUL_WITH_CUDA
#include "attention/cuda/cuda_attention.h"
#endif

namespace longhaul {

const char* to_string(AttentionBackend b) {
  switch (b) {
    case AttentionBackend::Auto: return "auto";
    case AttentionBackend::Reference: return "reference";
    case AttentionBackend::Cpu: return "cpu";
    case AttentionBackend::Cuda: return "cuda";
  }
  return "?";
}

BlockView BlockView::contiguous(int64_t q_begin, int64_t tq, int64_t k_begin, int64_t tk) {
  return {at::arange(q_begin, q_begin + tq, at::kLong), at::arange(k_begin, k_begin + tk, at::kLong)};
}

namespace {

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

void check_tensor(const char* fn, const char* name, const at::Tensor& t, const at::Tensor& like) {
  LH_CHECK(t.defined(), fn, ": ", name, " is undefined");
  LH_CHECK(t.dim() == 3, fn, ": ", name, " must be [T, H, D], got sizes ", t.sizes());
  LH_CHECK(t.scalar_type() == like.scalar_type(), fn, ": ", name, " has dtype ", t.scalar_type(), ", expected ",
           like.scalar_type(), " like q");
  LH_CHECK(t.device() == like.device(), fn, ": ", name, " is on ", t.device(), ", expected ", like.device(),
           " like q");
}

// Shapes, dtypes, devices, heads and positions of one call; returns the scale to use.
double check_inputs(const char* fn, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const BlockView& view, const Mask& mask, double scale) {
  warm_up_vector_math();  // the reference and the exact paths compute with torch's unary ops
  LH_CHECK(q.defined() && q.dim() == 3, fn, ": q must be [Tq, H, D], got ", q.defined() ? q.sizes() : at::IntArrayRef{});
  LH_CHECK(is_float(q.scalar_type()), fn, ": dtype ", q.scalar_type(),
           " is not supported, expected float64, float32, bfloat16 or float16");
  check_tensor(fn, "k", k, q);
  check_tensor(fn, "v", v, q);
  LH_CHECK(k.sizes() == v.sizes(), fn, ": k ", k.sizes(), " and v ", v.sizes(), " must have the same shape");
  LH_CHECK(k.size(2) == q.size(2), fn, ": head dim of k (", k.size(2), ") differs from q's (", q.size(2), ")");
  LH_CHECK(q.size(2) > 0 && q.size(1) > 0, fn, ": q has ", q.size(1), " heads of dim ", q.size(2),
           ", expected at least one head of dim >= 1");
  LH_CHECK(std::isfinite(scale) && scale >= 0, fn, ": the softmax scale must be a finite number > 0 (or 0 for "
           "1/sqrt(D)), got ", scale);
  LH_CHECK(q.scalar_type() == at::kDouble || scale <= std::numeric_limits<float>::max(), fn, ": the softmax scale ",
           scale, " does not fit the float32 the ", q.scalar_type(), " kernels compute in");
  LH_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, fn, ": k/v have ", k.size(1),
           " heads, which does not divide q's ", q.size(1), " heads (H % H_kv must be 0)");
  LH_CHECK(view.q_pos.defined() && view.k_pos.defined(), fn, ": the block view needs q_pos and k_pos");
  LH_CHECK(view.q_pos.dim() == 1 && view.k_pos.dim() == 1, fn, ": q_pos and k_pos must be 1-D (one position per "
           "row), got sizes ", view.q_pos.sizes(), " and ", view.k_pos.sizes());
  LH_CHECK(view.q_pos.numel() == q.size(0), fn, ": q_pos has ", view.q_pos.numel(), " positions for ", q.size(0),
           " query rows");
  LH_CHECK(view.k_pos.numel() == k.size(0), fn, ": k_pos has ", view.k_pos.numel(), " positions for ", k.size(0),
           " key rows");
  LH_CHECK(view.q_pos.scalar_type() == at::kLong && view.k_pos.scalar_type() == at::kLong &&
               view.q_pos.device().is_cpu() && view.k_pos.device().is_cpu(),
           fn, ": positions must be int64 CPU tensors, got ", view.q_pos.scalar_type(), " on ", view.q_pos.device());
  // Positions inside the sequence the mask is defined on (any >= 0 for the length-free shorthands).
  const int64_t end = mask.length() >= 0 ? mask.length() : kUnbounded;
  for (const at::Tensor* pos : {&view.q_pos, &view.k_pos}) {
    if (pos->numel() == 0) continue;
    const int64_t lo = pos->min().item<int64_t>(), hi = pos->max().item<int64_t>();
    LH_CHECK(lo >= 0 && hi < end, fn, ": ", pos == &view.q_pos ? "query" : "key", " positions [", lo, ", ", hi,
             "] lie outside the mask's sequence [0, ", end == kUnbounded ? std::string("inf") : std::to_string(end),
             ") (", mask.describe(), ")");
  }
  return scale != 0 ? scale : 1.0 / std::sqrt(static_cast<double>(q.size(2)));
}

AttentionBackend pick(AttentionBackend b, const at::Tensor& q, const char* fn) {
  if (b == AttentionBackend::Auto) b = q.device().is_cuda() ? AttentionBackend::Cuda : AttentionBackend::Cpu;
  if (b == AttentionBackend::Cuda) {
    LH_CHECK(q.device().is_cuda(), fn, ": backend cuda needs CUDA tensors, got ", q.device());
#if !LONGHAUL_WITH_CUDA
    throw Unsupported(std::string(fn) + ": this build of longhaul has no CUDA (LONGHAUL_WITH_CUDA=OFF)");
#endif
  } else if (b == AttentionBackend::Cpu && !q.device().is_cpu()) {
    // (The reference is plain ATen ops and runs on any device: bench kernel checks GPU rows with it.)
    throw Unsupported(detail::str_cat(fn, ": backend ", to_string(b), " runs on CPU tensors, got ", q.device()));
  }
  return b;
}

// Checks the inputs and resolves the row sums (from out when not given); the backends get both.
AttentionGrads backward_impl(const char* fn, BackwardInputs in, const BlockView& view, const Mask& mask, double scale,
                             AttentionBackend backend) {
  const at::Tensor &dout = in.dout, &q = in.q, &k = in.k, &v = in.v, &out = in.out, &lse = in.lse;
  scale = check_inputs(fn, q, k, v, view, mask, scale);
  check_tensor(fn, "dout", dout, q);
  LH_CHECK(dout.sizes() == q.sizes(), fn, ": dout ", dout.sizes(), " must have q's shape ", q.sizes());
  LH_CHECK(lse.defined() && lse.dim() == 2 && lse.size(0) == q.size(1) && lse.size(1) == q.size(0), fn,
           ": lse must be [H, Tq] = [", q.size(1), ", ", q.size(0), "], got ", lse.defined() ? lse.sizes() : at::IntArrayRef{});
  LH_CHECK(at::isFloatingType(lse.scalar_type()) && lse.device() == q.device(), fn,
           ": lse must be a floating-point tensor on q's device (", q.device(), "), got ", lse.scalar_type(), " on ",
           lse.device());
  LH_CHECK(out.defined() || in.row_sums.defined(), fn, ": give out or row_sums (both undefined)");
  if (!in.row_sums.defined()) {
    check_tensor(fn, "out", out, q);
    LH_CHECK(out.sizes() == q.sizes(), fn, ": out ", out.sizes(), " must have q's shape ", q.sizes());
    in.row_sums = attention_row_sums(dout, out);
  } else if (out.defined()) {
    LH_CHECK(out.sizes() == q.sizes() && out.device() == q.device(), fn, ": out ", out.sizes(), " on ", out.device(),
             " must have q's shape ", q.sizes(), " and device");
  }
  const at::Tensor& d = in.row_sums;
  LH_CHECK(d.dim() == 2 && d.size(0) == q.size(1) && d.size(1) == q.size(0), fn,
           ": row sums must be [H, Tq] = [", q.size(1), ", ", q.size(0), "], got ", d.sizes());
  LH_CHECK(at::isFloatingType(d.scalar_type()) && d.device() == q.device(), fn,
           ": row sums must be a floating-point tensor on q's device (", q.device(), "), got ", d.scalar_type(), " on ",
           d.device());
  if (q.is_meta()) return simulated::backward(in, view, mask);  // shape-only: the simulator
  switch (pick(backend, q, fn)) {
    case AttentionBackend::Reference: return reference::backward(in, view, mask, scale);
    case AttentionBackend::Cuda:
#if LONGHAUL_WITH_CUDA
      return cuda::backward(in, view, mask, scale);
#endif
    default: return cpu::backward(in, view, mask, scale);
  }
}

}  // namespace

namespace {
// The backend's own result: out in whatever dtype it produces (CUDA's whole-block path: the
// input dtype; otherwise float32/float64), lse float32 (float64 for float64 inputs).
AttentionOutput forward_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                             const Mask& mask, double scale, AttentionBackend backend) {
  constexpr const char* fn = "attention_forward";
  scale = check_inputs(fn, q, k, v, view, mask, scale);
  if (q.is_meta()) return simulated::forward(q, k, v, view, mask);  // shape-only: the simulator
  AttentionOutput r;
  switch (pick(backend, q, fn)) {
    case AttentionBackend::Reference: r = reference::forward(q, k, v, view, mask, scale); break;
    case AttentionBackend::Cuda:
#if LONGHAUL_WITH_CUDA
      r = cuda::forward(q, k, v, view, mask, scale);
      break;
#endif
    default: r = cpu::forward(q, k, v, view, mask, scale);
  }
  const auto acc = accumulate_type(q);
  if (r.lse.scalar_type() != acc) r.lse = r.lse.to(acc);
  return r;
}
}  // namespace

AttentionOutput attention_forward_partial(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const BlockView& view, const Mask& mask, double scale,
                                          AttentionBackend backend) {
  return aten_boundary("attention_forward_partial", [&] {
    AttentionOutput r = forward_impl(q, k, v, view, mask, scale, backend);
    const auto acc = accumulate_type(q);
    if (r.out.scalar_type() != acc) r.out = r.out.to(acc);
    return r;
  });
}

AttentionOutput attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const BlockView& view, const Mask& mask, double scale, AttentionBackend backend) {
  return aten_boundary("attention_forward", [&] {
    AttentionOutput r = forward_impl(q, k, v, view, mask, scale, backend);
    r.out = r.out.to(q.scalar_type());  // a no-op where the backend already gave the input dtype
    return r;
  });
}

AttentionGrads attention_backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale,
                                  AttentionBackend backend) {
  return aten_boundary("attention_backward", [&] { return backward_impl("attention_backward", in, view, mask, scale, backend); });
}

at::Tensor attention_row_sums(const at::Tensor& dout, const at::Tensor& out) {
  LH_CHECK(dout.sizes() == out.sizes(), "attention_row_sums: dout ", dout.sizes(), " and out ", out.sizes(),
           " must have the same shape");
  const auto acc = accumulate_type(dout);
  return (dout.to(acc) * out.to(acc)).sum(-1).transpose(0, 1).contiguous();
}

at::Tensor attention_out_for_row_sums(const at::Tensor& dout, const at::Tensor& row_sums) {
  LH_CHECK(dout.dim() == 3 && row_sums.dim() == 2 && row_sums.size(0) == dout.size(1) &&
               row_sums.size(1) == dout.size(0),
           "attention_out_for_row_sums: row sums must be [H, Tq] for dout [Tq, H, D], got ", row_sums.sizes(),
           " for dout ", dout.sizes());
  const auto acc = accumulate_type(dout);
  const at::Tensor d = dout.to(acc), mag = d.abs();
  const at::Tensor rs = row_sums.to(d.device()).to(acc).transpose(0, 1);  // [Tq, H]
  const at::Tensor zero = at::zeros({}, d.options());
  // sign(dO)·c with c = D / Σ|dO|, rounded to dout's dtype: Σ dO·O' = D up to one rounding of c.
  const at::Tensor norm1 = mag.sum(-1);
  at::Tensor o = (d.sign() * at::where(norm1 > 0, rs / norm1, zero).unsqueeze(-1)).to(dout.scalar_type()).to(acc);
  // What that rounding left, put on each row's largest |dO| entry: the row sums then carry one
  // rounding of that entry only (about Σ|dO| / max|dO| times closer in low precision).
  const at::Tensor left = rs - (d * o).sum(-1);
  const at::Tensor j = mag.argmax(-1, /*keepdim=*/true), dj = d.gather(-1, j);
  o.scatter_add_(-1, j, at::where(dj != 0, left.unsqueeze(-1) / dj, zero));
  return o.to(dout.scalar_type());
}

void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b) {
  LH_CHECK(out_acc.dim() == 3 && out_acc.sizes() == out_b.sizes(), "merge_into: out_acc ", out_acc.sizes(),
           " and out_b ", out_b.sizes(), " must be the same [T, H, D]");
  LH_CHECK(out_acc.scalar_type() == at::kFloat || out_acc.scalar_type() == at::kDouble,
           "merge_into: out_acc must be float32 (or float64), got ", out_acc.scalar_type());
  LH_CHECK(lse_acc.dim() == 2 && lse_acc.size(0) == out_acc.size(1) && lse_acc.size(1) == out_acc.size(0),
           "merge_into: lse_acc must be [H, T] = [", out_acc.size(1), ", ", out_acc.size(0), "], got ",
           lse_acc.sizes());
  LH_CHECK(lse_b.sizes() == lse_acc.sizes(), "merge_into: lse_b ", lse_b.sizes(), " must match lse_acc ",
           lse_acc.sizes());
  LH_CHECK(lse_acc.scalar_type() == at::kFloat || lse_acc.scalar_type() == at::kDouble, "merge_into: lse_acc must be "
           "float32 (or float64), got ", lse_acc.scalar_type());
  LH_CHECK(at::isFloatingType(out_b.scalar_type()) && at::isFloatingType(lse_b.scalar_type()),
           "merge_into: out_b and lse_b must be floating-point, got ", out_b.scalar_type(), " and ",
           lse_b.scalar_type());
  LH_CHECK(out_acc.is_contiguous() && lse_acc.is_contiguous(), "merge_into: the accumulators must be contiguous");
  LH_CHECK(out_acc.device() == out_b.device() && lse_acc.device() == out_acc.device() &&
               lse_b.device() == out_acc.device(),
           "merge_into: all tensors must be on one device, got ", out_acc.device(), " and ", out_b.device());
  if (out_acc.is_meta()) return simulated::merge(out_acc, lse_acc, out_b, lse_b);  // shape-only: the simulator
  if (out_acc.device().is_cuda()) {
#if LONGHAUL_WITH_CUDA
    cuda::merge_into(out_acc, lse_acc, out_b, lse_b);
    return;
#else
    throw Unsupported("merge_into: this build of longhaul has no CUDA");
#endif
  }
  cpu::merge_into(out_acc, lse_acc, out_b, lse_b);
}

}  // namespace longhaul
