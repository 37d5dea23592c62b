// ATen side of the CPU backend: dtype conversion (bf16/fp16 compute in float32), positions and
// document ids per row, output allocation; then the plain-struct kernels.
#include <ATen/ATen.h>

#include <algorithm>

#include "attention/cpu/kernels.h"
#include "attention/cpu/params.h"

namespace longhaul::cpu {
namespace {

constexpr int64_t kBlockQ = 256, kBlockK = 128;
// dQ partials: at most this many virtual workers and this many bytes in all.
constexpr int64_t kMaxWorkers = 4;
constexpr int64_t kPartialBudget = int64_t(256) << 20;

at::ScalarType compute_type(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }
at::Tensor as(const at::Tensor& t, at::ScalarType type) { return t.to(type).contiguous(); }

// Keeps the converted tensors alive while the kernel reads the raw pointers.
struct Prepared {
  at::Tensor q, k, v, q_pos, k_pos, q_doc, k_doc;
};

template <typename T>
Prepared prepare(AttentionParams<T>& p, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const BlockView& view, const Mask& mask, double scale) {
  const auto type = compute_type(q);
  Prepared keep{as(q, type), as(k, type), as(v, type), view.q_pos.contiguous(), view.k_pos.contiguous(), {}, {}};
  keep.q_doc = mask.documents_of(keep.q_pos);
  keep.k_doc = mask.documents_of(keep.k_pos);
  p.q = keep.q.data_ptr<T>();
  p.k = keep.k.data_ptr<T>();
  p.v = keep.v.data_ptr<T>();
  p.tq = q.size(0);
  p.tk = k.size(0);
  p.h = q.size(1);
  p.hkv = k.size(1);
  p.d = q.size(2);
  p.scale = static_cast<T>(scale);
  p.q_pos = keep.q_pos.data_ptr<int64_t>();
  p.k_pos = keep.k_pos.data_ptr<int64_t>();
  p.q_doc = keep.q_doc.data_ptr<int64_t>();
  p.k_doc = keep.k_doc.data_ptr<int64_t>();
  p.mask = mask.spec();
  // Longer query tiles reuse each K,V tile more; that pays at D >= 128 (measured: full mask,
  // T=8192, 0.725 → 0.757 of sgemm), not at D = 64.
  p.block_q = p.d >= 128 ? 2 * kBlockQ : kBlockQ;
  p.block_k = kBlockK;
  // A narrow band (window) wastes less of each partial tile with shorter query tiles.
  if (mask.has_window() && mask.left() + mask.right() < 8 * kBlockQ) p.block_q = kBlockQ / 2;
  return keep;
}

template <typename T>
AttentionOutput forward_typed(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                              const Mask& mask, double scale) {
  ForwardParams<T> p;
  Prepared keep = prepare(p, q, k, v, view, mask, scale);
  at::Tensor out = at::empty(keep.q.sizes(), keep.q.options());
  at::Tensor lse = at::empty({p.h, p.tq}, keep.q.options());
  p.out = out.data_ptr<T>();
  p.lse = lse.data_ptr<T>();
  if (p.tq > 0) {
    if (p.tk == 0) {
      out.zero_();
      lse.fill_(-std::numeric_limits<double>::infinity());
    } else {
      forward_kernel(p);
    }
  }
  return {out, lse};  // float32 (float64): the caller rounds
}

template <typename T>
AttentionGrads backward_typed(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view,
                              const Mask& mask, double scale) {
  BackwardParams<T> p;
  Prepared keep = prepare(p, q, k, v, view, mask, scale);
  const auto type = keep.q.scalar_type();
  at::Tensor dout_c = as(dout, type), lse_c = as(lse, type), rows_c = as(row_sums, type);
  at::Tensor dq = at::zeros(keep.q.sizes(), keep.q.options());
  at::Tensor dk = at::zeros(keep.k.sizes(), keep.k.options());
  at::Tensor dv = at::zeros(keep.k.sizes(), keep.k.options());
  if (p.tq == 0 || p.tk == 0) return {dq, dk, dv};
  p.dout = dout_c.data_ptr<T>();
  p.lse = lse_c.data_ptr<T>();
  p.row_sums = rows_c.data_ptr<T>();
  p.dq = dq.data_ptr<T>();
  p.dk = dk.data_ptr<T>();
  p.dv = dv.data_ptr<T>();
  // The worker count depends on sizes only, never on threads (bitwise-reproducible results).
  const int64_t items = p.hkv * ((p.tk + p.block_k - 1) / p.block_k);
  const int64_t partial_bytes = dq.numel() * static_cast<int64_t>(sizeof(T));
  p.workers = std::max<int64_t>(1, std::min({kMaxWorkers, items, kPartialBudget / std::max<int64_t>(partial_bytes, 1)}));
  at::Tensor partials;
  if (p.workers > 1) {
    partials = at::empty({p.workers * dq.numel()}, keep.q.options());
    p.dq_partials = partials.data_ptr<T>();
  }
  backward_kernel(p);
  return {dq, dk, dv};
}

}  // namespace

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale) {
  return q.scalar_type() == at::kDouble ? forward_typed<double>(q, k, v, view, mask, scale)
                                        : forward_typed<float>(q, k, v, view, mask, scale);
}

AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view, const Mask& mask,
                        double scale) {
  return q.scalar_type() == at::kDouble
             ? backward_typed<double>(dout, q, k, v, row_sums, lse, view, mask, scale)
             : backward_typed<float>(dout, q, k, v, row_sums, lse, view, mask, scale);
}

void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b) {
  const auto type = out_acc.scalar_type();
  at::Tensor ob = as(out_b, type), lb = as(lse_b, type);
  at::Tensor la = lse_acc.scalar_type() == type ? lse_acc : lse_acc.to(type);
  auto run = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    MergeParams<T> p;
    p.out_acc = out_acc.data_ptr<T>();
    p.lse_acc = la.data_ptr<T>();
    p.out_b = ob.data_ptr<T>();
    p.lse_b = lb.data_ptr<T>();
    p.t = out_acc.size(0);
    p.h = out_acc.size(1);
    p.d = out_acc.size(2);
    merge_kernel(p);
  };
  if (type == at::kDouble) run(static_cast<double*>(nullptr));
  else run(static_cast<float*>(nullptr));
  if (!la.is_same(lse_acc)) lse_acc.copy_(la);
}

}  // namespace longhaul::cpu
