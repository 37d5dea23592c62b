// The CUDA backend of attention/: ATen's fused kernels where they fit (FlashAttention-2 varlen
// with windows, memory-efficient, cuDNN), with LSE conventions normalised to longhaul's (empty
// rows: out = 0, lse = −∞), and longhaul's own CUDA kernels for the merge and the LSE fix-up.
// Entry points take validated CUDA tensors (see attention.h for the contract).
#pragma once

#include <string>

#include "attention/attention.h"

namespace longhaul::cuda {

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale);
// in.row_sums defined (attention_backward resolves it); in.out when at hand (ATen's fused
// backward kernels need it; without it the exact path runs).
AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale);
// The kernels forward() would run on this block, e.g. "flash_varlen x2", and backward() where
// they differ: "cudnn_varlen x1 (backward: flash_varlen x1)" (benchmarks' notes).
std::string route_summary(const at::Tensor& q, const at::Tensor& k, const BlockView& view, const Mask& mask,
                          double scale);
void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b);

// Whether a block or piece [Tq, H, D] x [Tk, H, D] (full, or causal and square; as many KV heads
// as query heads) runs on cuDNN's fused attention rather than FlashAttention-2: where ATen's SDPA
// would pick cuDNN.
bool prefers_cudnn(const at::Tensor& q, const at::Tensor& k, bool causal, double scale);

}  // namespace longhaul::cuda
