// The machine's float32 GEMM rate (at::mm, square n×n, the current intra-op threads), the
// yardstick of the `sgemm_fraction` column.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

#include "benchmarks/common/timing.h"

namespace longhaul::bench {

struct SgemmRate {
  int64_t n;
  double time_ms;  // median of one n×n×n product
  double gflops;   // 2·n³ / time
};

SgemmRate measure_sgemm(c10::Device device, int64_t n, const TimingPlan& plan);

}  // namespace longhaul::bench
