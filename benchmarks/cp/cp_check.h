// The built-in check of `longhaul bench cp` (the `wrong` column): a configuration run at a small
// sequence length through ContextParallel on every rank's shard and compared with the float64
// reference on the global tensors (forward out and lse, backward dq, dk, dv), elementwise under the
// per-dtype tolerance of the kernel benchmark.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "benchmarks/kernel/mask_cases.h"
#include "parallel/options.h"
#include "runtime/comm/comm.h"

namespace longhaul::bench {

struct CpCheckCase {
  Strategy strategy;
  Layout layout;
  std::string mask;  // a name of mask_cases.h, scaled from t to small_t
  int64_t t, small_t, h, h_kv, d;
  at::ScalarType dtype = at::kFloat;
  uint64_t seed = 7;
};

// Elements outside the tolerance, summed over the ranks of `comm` (a collective).
int64_t check_cp_against_reference(Communicator& comm, const CpCheckCase& c, const MaskCaseOptions& masks);

}  // namespace longhaul::bench
