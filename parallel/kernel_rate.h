// The local attention kernel's measured forward+backward rate, the cost model's compute input
// (planner.h, bucket_planner.h) when no rate is given.
#pragma once

#include <cstdint>

namespace longhaul {

// GFLOP/s of one causal block of t tokens with h query and h_kv key/value heads of size d,
// forward + backward (3.5 × the forward's 4·area·h·d), after one warm-up.
double measure_kernel_gflops(int64_t h, int64_t h_kv, int64_t d, int64_t t = 2048);

// GFLOP/s of a linear layer's forward + backward (three GEMMs, 6·rows·in·out FLOPs): the rate of
// a model's projections and MLP of that width.
double measure_dense_gflops(int64_t rows, int64_t in, int64_t out);

// GB/s (bytes read + written) of an in-place elementwise pass over a float32 tensor of `bytes`
// already in memory: the rate of passes over a large score matrix.
double measure_memory_gbps(int64_t bytes = int64_t(128) << 20);

// GB/s at which fresh memory is first written, beyond the write itself: what a new tensor of
// `bytes` costs on a CPU, where a large allocation is new pages that fault on first touch.
double measure_first_touch_gbps(int64_t bytes = int64_t(128) << 20);

}  // namespace longhaul
