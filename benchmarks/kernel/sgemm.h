// The machine's float32 GEMM rate, the yardstick of the `sgemm_fraction` column: the best square
// n×n product among the GEMM libraries this machine has, so that a fraction means the same on
// every CPU (torch's MKL is not the fastest BLAS everywhere: on AMD EPYC OpenBLAS can beat it).
// Candidates: torch's at::mm (on the device asked for), and on the CPU every CBLAS library that
// loads (OpenBLAS, BLIS, MKL's single dynamic library), run with the current intra-op threads.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "benchmarks/common/timing.h"

namespace longhaul::bench {

struct SgemmRate {
  int64_t n = 0;
  double time_ms = 0;  // median of one n×n×n product
  double gflops = 0;   // 2·n³ / time
  std::string library;  // "torch" or the CBLAS library's file name
};

struct SgemmYardstick {
  SgemmRate best;
  std::vector<SgemmRate> candidates;  // every library measured, in the order tried
  std::string summary() const;        // "torch 310.2, libopenblas.so.0 298.7 GFLOP/s"
};

SgemmYardstick measure_sgemm(c10::Device device, int64_t n, const TimingPlan& plan);

}  // namespace longhaul::bench
