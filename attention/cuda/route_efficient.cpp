#include "attention/cuda/route_efficient.h"

#include <optional>

namespace longhaul::cuda::routes {
namespace {

// KV heads repeated to H (the memory-efficient kernel has no GQA): [n, H_kv, D] -> [1, n, H, D].
at::Tensor expand_heads(const at::Tensor& x, int64_t h) {
  const int64_t g = h / x.size(1);
  return (g == 1 ? x : x.repeat_interleave(g, 1)).unsqueeze(0);
}

int64_t efficient_mask_type(const PieceGroup& g) { return g.right == 0 ? 2 : 0; }  // bottom-right causal / none

// A causal window (left keys before the diagonal, right 0): the kernel's window_size counts the
// keys a row sees, the diagonal included.
std::optional<int64_t> efficient_window(const PieceGroup& g) {
  if (g.left == -1) return std::nullopt;
  return g.left + 1;
}

}  // namespace

AttentionOutput efficient_forward_piece(const PieceGroup& g, const Piece& p, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, double scale) {
  const int64_t h = q.size(1);
  auto res = at::_efficient_attention_forward(
      q.narrow(0, p.q_row, p.m).unsqueeze(0), expand_heads(k.narrow(0, p.k_row, p.n), h),
      expand_heads(v.narrow(0, p.k_row, p.n), h), std::nullopt, std::nullopt, std::nullopt, std::nullopt,
      std::nullopt, 0.0, efficient_mask_type(g), true, scale, std::nullopt, efficient_window(g));
  at::Tensor out = std::get<0>(res).select(0, 0).contiguous();  // [m, H, Dp]
  at::Tensor lse = fix_lse(std::get<1>(res), out, p.m);          // [1, H, ceil32(m)] -> [H, m]
  return {out, lse};
}

void efficient_forward_group(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             double scale, at::Tensor& out_acc, at::Tensor& lse_acc) {
  for (const Piece& p : g.pieces) {
    const AttentionOutput r = efficient_forward_piece(g, p, q, k, v, scale);
    const at::Tensor rows = at::arange(p.q_row, p.q_row + p.m, q.options().dtype(at::kLong));
    merge_rows(out_acc, lse_acc, rows, p.m == q.size(0), r.out, r.lse);
  }
}

void efficient_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                              const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                              GradAcc& acc) {
  acc.allocate_if_needed();
  const int64_t h = q.size(1), hkv = k.size(1), d = acc.dq.size(2);
  const at::Tensor no_philox = at::zeros({}, at::TensorOptions().dtype(at::kLong));
  for (const Piece& p : g.pieces) {
    // The kernel reads logsumexp in its own padded layout [1, H, ceil32(m)].
    at::Tensor lse_p = at::zeros({1, h, (p.m + 31) / 32 * 32}, lse.options());
    lse_p.select(0, 0).narrow(1, 0, p.m).copy_(lse.narrow(1, p.q_row, p.m));
    auto res = at::_efficient_attention_backward(
        dout.narrow(0, p.q_row, p.m).unsqueeze(0), q.narrow(0, p.q_row, p.m).unsqueeze(0),
        expand_heads(k.narrow(0, p.k_row, p.n), h), expand_heads(v.narrow(0, p.k_row, p.n), h), std::nullopt,
        out.narrow(0, p.q_row, p.m).unsqueeze(0), std::nullopt, std::nullopt, p.m, p.n, lse_p, 0.0, no_philox,
        no_philox, efficient_mask_type(g), false, scale, std::nullopt, efficient_window(g));
    auto group_sum = [&](const at::Tensor& x) {  // [1, n, H, Dp] -> [n, H_kv, d] float32
      return x.select(0, 0).narrow(2, 0, d).to(at::kFloat).view({p.n, hkv, h / hkv, d}).sum(2);
    };
    acc.dq.narrow(0, p.q_row, p.m).add_(std::get<0>(res).select(0, 0).narrow(2, 0, d).to(at::kFloat));
    acc.dk.narrow(0, p.k_row, p.n).add_(group_sum(std::get<1>(res)));
    acc.dv.narrow(0, p.k_row, p.n).add_(group_sum(std::get<2>(res)));
  }
}

}  // namespace longhaul::cuda::routes
