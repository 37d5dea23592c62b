#include "attention/cuda/route_flash.h"

#include <optional>

namespace longhaul::cuda::routes {
namespace {

// Flash's window arguments for a group: is_causal for the plain diagonal, explicit offsets else.
struct FlashWindow {
  bool causal;
  std::optional<int64_t> left, right;
};
FlashWindow flash_window(const PieceGroup& g) {
  if (g.left == -1 && g.right == 0) return {true, std::nullopt, std::nullopt};
  return {false, g.left, g.right};
}

}  // namespace

GroupOutput flash_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 double scale) {
  Rows qr = piece_rows(g.pieces, 0, g.pieces.size(), true, q.size(0), q.device());
  const Rows kr = piece_rows(g.pieces, 0, g.pieces.size(), false, k.size(0), q.device());
  const FlashWindow w = flash_window(g);
  auto res = at::_flash_attention_forward(gather(q, qr), gather(k, kr), gather(v, kr), qr.cu, kr.cu, qr.max_len,
                                          kr.max_len, 0.0, w.causal, false, scale, w.left, w.right);
  at::Tensor out = std::get<0>(res);
  at::Tensor lse = fix_lse(std::get<1>(res), out, qr.total);
  return {out, lse, std::move(qr)};
}

void flash_forward_group(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale, at::Tensor& out_acc, at::Tensor& lse_acc) {
  const GroupOutput r = flash_forward_pieces(g, q, k, v, scale);
  // One merge per layer: the rows of a layer are disjoint.
  int64_t r0 = 0;
  for (size_t l = 0; l + 1 < g.layer_begin.size(); ++l) {
    int64_t rows = 0;
    for (size_t i = g.layer_begin[l]; i < g.layer_begin[l + 1]; ++i) rows += g.pieces[i].m;
    merge_rows(out_acc, lse_acc, r.qr.index.narrow(0, r0, rows), r.qr.identity, r.out.narrow(0, r0, rows),
               r.lse.narrow(1, r0, rows));
    r0 += rows;
  }
}

void flash_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                          const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                          GradAcc& acc) {
  const Rows qr = piece_rows(g.pieces, 0, g.pieces.size(), true, q.size(0), q.device());
  const Rows kr = piece_rows(g.pieces, 0, g.pieces.size(), false, k.size(0), q.device());
  const FlashWindow w = flash_window(g);
  const at::Tensor lse_g = qr.identity ? lse.contiguous() : lse.index_select(1, qr.index).contiguous();
  // No dropout: the philox state is never read, but the operator wants tensors.
  const at::Tensor rng_state = at::zeros({2}, q.options().dtype(at::kLong));
  const at::Tensor unused = at::empty({0}, q.options().dtype(at::kLong));
  auto res = at::_flash_attention_backward(gather(dout, qr), gather(q, qr), gather(k, kr), gather(v, kr),
                                           gather(out, qr), lse_g, qr.cu, kr.cu, qr.max_len, kr.max_len, 0.0,
                                           w.causal, rng_state, unused, scale, w.left, w.right);
  const int64_t d = acc.q_shape[2];
  auto grad = [d](const at::Tensor& x) { return x.narrow(2, 0, d).to(at::kFloat); };
  if (qr.identity && kr.identity && !acc.dq.defined()) {  // the whole block: the kernel's grads are the answer
    acc.dq = grad(std::get<0>(res)), acc.dk = grad(std::get<1>(res)), acc.dv = grad(std::get<2>(res));
    return;
  }
  acc.allocate_if_needed();
  acc.dq.index_add_(0, qr.index, grad(std::get<0>(res)));
  acc.dk.index_add_(0, kr.index, grad(std::get<1>(res)));
  acc.dv.index_add_(0, kr.index, grad(std::get<2>(res)));
}

}  // namespace longhaul::cuda::routes
