#include "attention/reference.h"

#include <ATen/ATen.h>

#include <limits>

namespace longhaul::reference {
namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One head at a time: the Tq×Tk temporaries of a head are reused by the allocator, where all
// heads at once would map (and page-fault) H times as much fresh memory for every product.
// Query head i reads key/value head i / (H / H_kv).
at::Tensor head(const at::Tensor& x, int64_t i, int64_t h) {
  return x.select(1, i / (h / x.size(1))).to(at::kDouble);
}
}  // namespace

at::Tensor visible_matrix(const Mask& mask, const BlockView& view) {
  // The union of the slices, each a rectangle of positions cut by its band of diagonals.
  at::Tensor qp = view.q_pos.to(at::kLong).unsqueeze(1), kp = view.k_pos.to(at::kLong).unsqueeze(0);
  at::Tensor vis = at::zeros({qp.size(0), kp.size(1)}, at::kBool);
  const at::Tensor diag = kp - qp;
  for (const MaskSlice& s : mask.spec().slices())
    vis = vis | (qp.ge(s.q_begin) & qp.lt(s.q_end) & kp.ge(s.k_begin) & kp.lt(s.k_end) & diag.ge(s.lo) &
                 diag.le(s.hi));
  return vis;
}

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale) {
  const int64_t h = q.size(1);
  const at::Tensor vis = visible_matrix(mask, view).to(q.device());  // positions are host tensors
  at::Tensor O = at::empty({q.size(0), h, v.size(2)}, q.options().dtype(at::kDouble));
  at::Tensor lse = at::empty({h, q.size(0)}, q.options().dtype(at::kDouble));
  for (int64_t i = 0; i < h; ++i) {
    at::Tensor S = (at::matmul(head(q, i, h), head(k, i, h).t()) * scale).masked_fill(~vis, kNegInf);
    at::Tensor l = at::logsumexp(S, -1);  // -inf for rows without keys
    // Hidden entries are 0 (rows without keys too); a NaN in the inputs stays NaN, as in SDPA.
    at::Tensor P = at::where(vis, at::exp(S - l.unsqueeze(-1)), at::zeros({}, S.options()));
    O.select(1, i).copy_(at::matmul(P, head(v, i, h)));
    lse[i].copy_(l);
  }
  return {O, lse};
}

AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale) {
  const at::Tensor &dout = in.dout, &q = in.q, &k = in.k, &v = in.v;
  const int64_t h = q.size(1);
  const at::Tensor vis = visible_matrix(mask, view).to(q.device());
  const at::Tensor L = in.lse.to(at::kDouble).unsqueeze(-1), R = in.row_sums.to(at::kDouble).unsqueeze(-1);
  const auto zeros_f64 = [](const at::Tensor& x) { return at::zeros(x.sizes(), x.options().dtype(at::kDouble)); };
  at::Tensor dQ = zeros_f64(q), dK = zeros_f64(k), dV = zeros_f64(v);
  for (int64_t i = 0; i < h; ++i) {
    at::Tensor Q = head(q, i, h), K = head(k, i, h), V = head(v, i, h), dO = head(dout, i, h);
    at::Tensor P = at::where(vis & at::isfinite(L[i]), at::exp(at::matmul(Q, K.t()) * scale - L[i]),
                             at::zeros({}, Q.options()));
    at::Tensor dS = P * (at::matmul(dO, V.t()) - R[i]);
    const int64_t j = i / (h / k.size(1));  // the key/value head: its query heads' gradients add up
    dV.select(1, j).add_(at::matmul(P.t(), dO));
    dQ.select(1, i).copy_(at::matmul(dS, K) * scale);
    dK.select(1, j).add_(at::matmul(dS.t(), Q) * scale);
  }
  return {dQ, dK, dV};
}

}  // namespace longhaul::reference
