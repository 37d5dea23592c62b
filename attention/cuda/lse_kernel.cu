// LSE fix-up after an ATen forward (see kernels.h): strided ATen logsumexp -> [H, T] float32,
// and longhaul's convention for rows that saw no key (lse = −∞, out = 0).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "attention/cuda/kernels.h"
#include "core/cuda_check.h"

namespace longhaul::cuda::kernels {
namespace {

constexpr int kThreads = 256;

template <typename TO>
__global__ void __launch_bounds__(kThreads) lse_fix_kernel(LseFixParams p) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // h * T + t
  if (idx >= p.heads * p.tokens) return;
  const int64_t h = idx / p.tokens, t = idx % p.tokens;
  const float v = p.lse_in[h * p.in_head_stride + t * p.in_row_stride];
  // Only a finite LSE means the row saw a key: flash writes +∞ for empty rows, others −∞ or NaN.
  const bool empty = !isfinite(v);
  p.lse_out[idx] = empty ? -INFINITY : v;
  if (empty && p.out != nullptr) {
    TO* row = static_cast<TO*>(p.out) + (t * p.heads + h) * p.head_dim;
    for (int64_t e = 0; e < p.head_dim; ++e) row[e] = TO(0.f);
  }
}

}  // namespace

void launch_lse_fix(const LseFixParams& p, cudaStream_t stream) {
  const int64_t n = p.heads * p.tokens;
  if (n == 0) return;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffffLL) throw Error("lse fix-up kernel: " + std::to_string(n) + " rows exceed one launch");
  const unsigned grid = static_cast<unsigned>(blocks);
  switch (p.out_type) {
    case DType::Float32: lse_fix_kernel<float><<<grid, kThreads, 0, stream>>>(p); break;
    case DType::Float16: lse_fix_kernel<__half><<<grid, kThreads, 0, stream>>>(p); break;
    case DType::BFloat16: lse_fix_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p); break;
  }
  LH_CHECK_CUDA(cudaGetLastError());  // the launch
}

}  // namespace longhaul::cuda::kernels
