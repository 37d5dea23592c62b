// The CPU backend's entry points (entry.cpp): dtype conversion and positions on validated ATen
// tensors, then the tiled flash-style kernels (forward_kernel.cpp, backward_kernel.cpp, tiles.cpp) on plain structs.
#pragma once

#include "attention/attention.h"

namespace longhaul::cpu {

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale);
// in.row_sums defined (attention_backward resolves it); in.out is not used.
AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale);
void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b);

}  // namespace longhaul::cpu
