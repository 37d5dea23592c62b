#include "attention/reference.h"

#include <ATen/ATen.h>

#include <limits>

namespace longhaul::reference {
namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// [T, H, D] -> [H, T, D] float64, KV heads repeated to H.
at::Tensor heads_first(const at::Tensor& x, int64_t h) {
  at::Tensor y = x.to(at::kDouble).permute({1, 0, 2});
  return y.size(0) == h ? y : y.repeat_interleave(h / y.size(0), 0);
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
  at::Tensor Q = heads_first(q, h), K = heads_first(k, h), V = heads_first(v, h);
  at::Tensor vis = visible_matrix(mask, view).unsqueeze(0);
  at::Tensor S = (at::matmul(Q, K.transpose(1, 2)) * scale).masked_fill(~vis, kNegInf);
  at::Tensor lse = at::logsumexp(S, -1);  // -inf for rows without keys
  // Hidden entries are 0 (rows without keys too); a NaN in the inputs stays NaN, as in SDPA.
  at::Tensor P = at::where(vis, at::exp(S - lse.unsqueeze(-1)), at::zeros({}, at::kDouble));
  at::Tensor O = at::matmul(P, V).permute({1, 0, 2}).contiguous();
  return {O, lse};
}

AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale) {
  const at::Tensor &dout = in.dout, &q = in.q, &k = in.k, &v = in.v, &row_sums = in.row_sums, &lse = in.lse;
  const int64_t h = q.size(1), hkv = k.size(1);
  at::Tensor Q = heads_first(q, h), K = heads_first(k, h), V = heads_first(v, h), dO = heads_first(dout, h);
  at::Tensor vis = visible_matrix(mask, view).unsqueeze(0);
  at::Tensor L = lse.to(at::kDouble).unsqueeze(-1);
  at::Tensor S = at::matmul(Q, K.transpose(1, 2)) * scale;
  at::Tensor P = at::where(vis & at::isfinite(L), at::exp(S - L), at::zeros({}, at::kDouble));
  at::Tensor dV = at::matmul(P.transpose(1, 2), dO);
  at::Tensor dP = at::matmul(dO, V.transpose(1, 2));
  at::Tensor dS = P * (dP - row_sums.to(at::kDouble).unsqueeze(-1));
  at::Tensor dQ = at::matmul(dS, K) * scale;
  at::Tensor dK = at::matmul(dS.transpose(1, 2), Q) * scale;
  auto group_sum = [&](const at::Tensor& g) {  // [H, Tk, D] -> [Tk, H_kv, D]
    return g.view({hkv, h / hkv, g.size(1), g.size(2)}).sum(1).permute({1, 0, 2}).contiguous();
  };
  return {dQ.permute({1, 0, 2}).contiguous(), group_sum(dK), group_sum(dV)};
}

}  // namespace longhaul::reference
