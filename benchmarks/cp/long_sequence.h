// `longhaul bench long`: one very long sequence through a CP strategy (default: 1,048,576 tokens,
// causal window 4096, H=4, H_kv=1, D=64, ring, contiguous): forward+backward time, the bytes each
// rank sent (only the halo the window needs should travel), peak tracked bytes, and the largest
// difference from the single-process result computed by rank 0 with the same kernel.
#pragma once

#include <string>

#include "benchmarks/common/report.h"
#include "runtime/comm/comm.h"

namespace longhaul::bench {

struct LongSequenceOptions {
  int64_t T = int64_t(1) << 20;
  int64_t window = 4096;  // causal window (left extent); 0 = plain causal
  int64_t H = 4, H_kv = 1, D = 64;
  std::string strategy = "ring", layout = "contiguous";
  bool check = true;  // compare with the single-process result on rank 0
  double tolerance = 1e-4;
};

// Collective. One row: timings, bytes, memory, max error.
Row run_long_sequence(Communicator& comm, const LongSequenceOptions& o);

}  // namespace longhaul::bench
