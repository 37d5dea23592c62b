// The memory-efficient route (float32, head dim <= 256, full, causal or causal-window groups):
// one at::_efficient_attention_* call per piece, KV heads expanded (the kernel has no GQA), mask
// type none or bottom-right causal, the kernel's own window_size for causal windows.
#pragma once

#include "attention/attention.h"
#include "attention/cuda/route_common.h"

namespace longhaul::cuda::routes {

// Whether the kernel's own window runs causal windows exactly on q's device (probed once), for a
// block whose window pieces are all square (`square_pieces`) or not.
bool efficient_window_usable(const at::Tensor& q, bool square_pieces);

// out [m, H, Dp] (input dtype) and fixed-up lse [H, m] of one piece.
AttentionOutput efficient_forward_piece(const PieceGroup& g, const Piece& p, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, double scale);
// lse in ATen's convention (lse_for_aten); adds the group's gradients into acc.
void efficient_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                              const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                              GradAcc& acc);

}  // namespace longhaul::cuda::routes
