// The FlashAttention-2 route (fp16/bf16, head dim <= 256, sm80+): every piece group of a block plan
// as one varlen call with the group's window offsets; GQA by the kernel's own head grouping.
#pragma once

#include "attention/cuda/route_common.h"

namespace longhaul::cuda::routes {

// Flash's output for all pieces of a group: out [rows, H, Dp] (input dtype) and the fixed-up
// lse [H, rows] of the q rows `qr` (pieces in order).
struct GroupOutput {
  at::Tensor out, lse;
  Rows qr;
};
GroupOutput flash_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 double scale);
// Runs a group and merges it into the float32 accumulators, one merge per layer of the group.
void flash_forward_group(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale, at::Tensor& out_acc, at::Tensor& lse_acc);
// lse in ATen's convention (lse_for_aten); adds the group's gradients into acc.
void flash_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                          const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                          GradAcc& acc);

}  // namespace longhaul::cuda::routes
