// The CPU backend of attention/: tiled flash-style kernels (no Tq×Tk buffer) over BLAS tile GEMMs.
// Entry points take validated ATen tensors; the kernels below them take plain parameter structs.
#pragma once

#include "attention/attention.h"

namespace longhaul::cpu {

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale);
AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view, const Mask& mask,
                        double scale);
void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b);

}  // namespace longhaul::cpu
