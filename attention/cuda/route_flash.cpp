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
  add_group_grads(qr, kr, std::get<0>(res), std::get<1>(res), std::get<2>(res), acc);
}

}  // namespace longhaul::cuda::routes
