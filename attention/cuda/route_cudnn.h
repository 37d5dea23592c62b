// The cuDNN route: a whole square block with one full or causal piece, fp16/bf16, where ATen's
// SDPA would pick cuDNN (Hopper). The [T, H, D] tensors go in as [1, H, T, D] views (no copy).
#pragma once

#include "attention/attention.h"

namespace longhaul::cuda::routes {

// out [T, H, Dp] (input dtype) and fixed-up lse [H, T].
AttentionOutput cudnn_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                              double scale);
// Gradients narrowed to head dim d, float32.
AttentionGrads cudnn_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& out, const at::Tensor& lse, bool causal, double scale, int64_t d);

}  // namespace longhaul::cuda::routes
