// The exact math path of the CUDA backend, in ATen ops on the device: for what no fused kernel
// takes (float64, fragmented/striped blocks, float32 windows, head dim > 256) and for the
// backward from row sums alone. Query rows go in chunks so the [H, chunk, Tk] score buffers stay
// under a fixed budget; K/V are never expanded for GQA (heads are grouped in the batched GEMMs).
// Computes in float32 (float64 for float64 inputs).
#pragma once

#include "attention/attention.h"

namespace longhaul::cuda::fallback {

// out [Tq, H, D] in the accumulation dtype (float32, or float64), lse [H, Tq].
AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale);
// row_sums [H, Tq]; grads in the accumulation dtype.
AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view, const Mask& mask,
                        double scale);

}  // namespace longhaul::cuda::fallback
