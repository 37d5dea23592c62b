// longhaul's own CUDA kernels of attention/: plain parameter structs and launchers, no ATen. The
// adapter (cuda_attention.cpp) validates shapes and dtypes and fills these structs; launchers
// enqueue one kernel on the given stream and throw longhaul::Error with the CUDA error text.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace longhaul::cuda::kernels {

// Element type of a tensor handed to a kernel as a void pointer.
enum class DType { Float32, Float16, BFloat16 };

// In-place exact LSE merge of a partial (out_b, lse_b) into float32 accumulators:
//   lse = max + log1p(exp(min − max))  (−∞ when both are −∞)
//   out_acc = exp(lse_acc − lse)·out_acc + exp(lse_b − lse)·out_b
// out_acc and out_b are contiguous [T, H, D]; lse_acc and lse_b are contiguous [H, T].
struct MergeParams {
  float* out_acc = nullptr;
  float* lse_acc = nullptr;
  const void* out_b = nullptr;
  DType out_b_type = DType::Float32;
  const float* lse_b = nullptr;
  int64_t tokens = 0, heads = 0, head_dim = 0;
};
void launch_merge(const MergeParams& p, cudaStream_t stream);

// LSE fix-up after an ATen forward: reads an ATen logsumexp with any head/row strides (the
// transposed or 32-padded layouts), writes longhaul's [H, T] float32 and, for rows that saw no
// key (flash and cuDNN report +∞, NaN or −∞ there), lse = −∞ and out[t, h, :] = 0. The
// memory-efficient kernel reports 0 for such a row, which this cannot tell from a real lse: the
// block planner trims every piece to rows that see a key, so no kernel gets such a row.
struct LseFixParams {
  const float* lse_in = nullptr;
  int64_t in_head_stride = 0, in_row_stride = 0;  // in elements
  float* lse_out = nullptr;                       // contiguous [H, T]; may alias nothing else
  void* out = nullptr;                            // contiguous [T, H, D] or null
  DType out_type = DType::Float32;
  int64_t tokens = 0, heads = 0, head_dim = 0;
};
void launch_lse_fix(const LseFixParams& p, cudaStream_t stream);

}  // namespace longhaul::cuda::kernels
