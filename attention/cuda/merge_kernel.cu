// The exact LSE merge on the GPU, in place on float32 accumulators (see kernels.h).
//
// One block owns a run of consecutive (t, h) rows. Phase 1: one thread per row reads both LSEs,
// writes the merged LSE and leaves the two weights in shared memory (only that thread reads the
// row's lse_acc, so the in-place update has no race). Phase 2: the block streams the rows'
// elements with 16-byte accumulator loads, so the kernel is bound by HBM traffic
// (4 + 4 + sizeof(out_b) bytes per element).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "attention/cuda/kernels.h"
#include "core/cuda_check.h"

namespace longhaul::cuda::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxRowsPerBlock = 1024;
constexpr int64_t kElemsPerBlock = 8192;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// Four consecutive elements of out_b as floats (8- or 16-byte aligned load).
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const __half* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(a.x, a.y, b.x, b.y);
}

// Merged LSE and the two weights of one row; (−∞, 0, 0) when neither side saw a key.
__device__ __forceinline__ float3 merge_weights(float la, float lb) {
  const float mx = fmaxf(la, lb), mn = fminf(la, lb);
  if (mx == -INFINITY) return make_float3(-INFINITY, 0.f, 0.f);
  const float lse = mx + log1pf(expf(mn - mx));
  return make_float3(lse, expf(la - lse), expf(lb - lse));
}

template <typename TB, bool kVec4>
__global__ void __launch_bounds__(kThreads) merge_kernel(MergeParams p, int64_t rows_per_block) {
  __shared__ float2 weights[kMaxRowsPerBlock];
  const int64_t rows = p.tokens * p.heads;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t nrows = min(rows_per_block, rows - row0);
  for (int64_t i = threadIdx.x; i < nrows; i += blockDim.x) {
    const int64_t r = row0 + i, t = r / p.heads, h = r % p.heads;
    const int64_t l = h * p.tokens + t;
    const float3 w = merge_weights(p.lse_acc[l], p.lse_b[l]);
    p.lse_acc[l] = w.x;
    weights[i] = make_float2(w.y, w.z);
  }
  __syncthreads();
  const int64_t d = p.head_dim, base = row0 * d, n = nrows * d;
  float* acc = p.out_acc + base;
  const TB* b = static_cast<const TB*>(p.out_b) + base;
  if (kVec4) {
    for (int64_t e = 4 * static_cast<int64_t>(threadIdx.x); e < n; e += 4 * kThreads) {
      const float2 w = weights[e / d];  // d % 4 == 0: the 4 elements share a row
      float4 a = load4(acc + e);
      const float4 y = load4(b + e);
      a.x = w.x * a.x + w.y * y.x;
      a.y = w.x * a.y + w.y * y.y;
      a.z = w.x * a.z + w.y * y.z;
      a.w = w.x * a.w + w.y * y.w;
      *reinterpret_cast<float4*>(acc + e) = a;
    }
  } else {
    for (int64_t e = threadIdx.x; e < n; e += kThreads) {
      const float2 w = weights[e / d];
      acc[e] = w.x * acc[e] + w.y * to_float(b[e]);
    }
  }
}

template <typename TB>
void launch_typed(const MergeParams& p, cudaStream_t stream) {
  const int64_t rows = p.tokens * p.heads;
  const int64_t rows_per_block =
      std::max<int64_t>(1, std::min<int64_t>(kMaxRowsPerBlock, kElemsPerBlock / std::max<int64_t>(1, p.head_dim)));
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  if (blocks > 0x7fffffffLL) throw Error("merge kernel: " + std::to_string(rows) + " rows exceed one launch");
  // 16-byte accumulator loads and 8/16-byte out_b loads need D % 4 == 0 and aligned bases.
  const bool vec4 = p.head_dim % 4 == 0 && reinterpret_cast<uintptr_t>(p.out_acc) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(p.out_b) % (4 * sizeof(TB)) == 0;
  if (vec4)
    merge_kernel<TB, true><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, rows_per_block);
  else
    merge_kernel<TB, false><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, rows_per_block);
}

}  // namespace

void launch_merge(const MergeParams& p, cudaStream_t stream) {
  if (p.tokens == 0 || p.heads == 0) return;
  switch (p.out_b_type) {
    case DType::Float32: launch_typed<float>(p, stream); break;
    case DType::Float16: launch_typed<__half>(p, stream); break;
    case DType::BFloat16: launch_typed<__nv_bfloat16>(p, stream); break;
  }
  LH_CHECK_CUDA(cudaGetLastError());  // the launch
}

}  // namespace longhaul::cuda::kernels
