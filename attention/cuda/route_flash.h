// The FlashAttention-2 route (fp16/bf16, head dim <= 256, sm80+): every piece group of a block plan
// as one varlen call with the group's window offsets; GQA by the kernel's own head grouping.
#pragma once

#include "attention/cuda/route_common.h"

namespace longhaul::cuda::routes {

GroupOutput flash_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 double scale);
// lse in ATen's convention (lse_for_aten); adds the group's gradients into acc.
void flash_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                          const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                          GradAcc& acc);

}  // namespace longhaul::cuda::routes
