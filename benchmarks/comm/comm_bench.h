// `longhaul bench comm`: point-to-point and collective bandwidth over message sizes, with a
// built-in check of every received element, and the overlap row (does a transfer advance while
// the caller computes?). Metrics are defined in benchmarks/README.md.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "benchmarks/common/report.h"
#include "runtime/comm/comm.h"

namespace longhaul::bench {

struct CommBenchOptions {
  int64_t min_bytes = int64_t(1) << 10;
  int64_t max_bytes = int64_t(64) << 20;
  int size_factor = 4;  // sizes min, min·f, min·f², … up to max
  int iters = 20;       // timed repetitions at small sizes (fewer for large messages)
  int warmup = 2;
  std::vector<std::string> ops{"ring", "exchange", "all_to_all", "all_gather"};
  bool overlap = true;
  int64_t overlap_bytes = int64_t(64) << 20;
  double gemm_ratio = 4.0;           // GEMM length relative to the exchange alone
  // Idle-progress check: a GEMM of size idle_gemm_n timed before the communicator existed
  // (gemm_before_comm_ms, by the caller) and again with the progress engine idle.
  int64_t idle_gemm_n = 0;
  double gemm_before_comm_ms = NAN;
};

// Rows: op, P, bytes, time_us, algbw_GBps, busbw_GBps, wrong (summed over ranks). Collective.
std::vector<Row> run_comm_bench(Communicator& comm, const CommBenchOptions& options);

// The overlap row (needs P >= 2). Collective.
Row run_overlap_bench(Communicator& comm, const CommBenchOptions& options);

// Median time of a single-threaded n×n float32 GEMM, in ms (the overlap row's compute).
double time_gemm_ms(int64_t n, int reps);
// n such that the GEMM takes about `ms` (measured).
int64_t gemm_size_for_ms(double ms);

}  // namespace longhaul::bench
