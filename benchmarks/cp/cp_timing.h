// Timing of one CP configuration and of its single-rank baseline, both collective over the CP
// group. Every rank runs the same number of iterations: the time budget is judged on times
// already agreed over the ranks.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "attention/mask.h"
#include "benchmarks/common/timing.h"
#include "parallel/context_parallel.h"

namespace longhaul::bench {

struct CpTimes {
  double fwd_ms = 0, bwd_ms = 0;  // median over timed runs per rank, then max over ranks
  int64_t bytes_sent_fwd = 0;     // last timed run, max over ranks
  int64_t bytes_sent_bwd = 0;
  int64_t peak_tracked_bytes = 0;  // strategy buffers over forward + backward, max over ranks
  int iters = 0;
};

// Local shards in. A barrier (untimed) before each phase, so a phase starts together everywhere.
CpTimes time_cp(ContextParallel& cp, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                const at::Tensor& dout, const ShardPlan& plan, const Mask& mask, const TimingPlan& timing);

struct SingleRankTimes {
  double fwd_ms = 0, bwd_ms = 0;  // medians
  int iters = 0;
  // The same kernel run by every rank at once (each with its own threads), max over ranks: the
  // rate one rank's kernel gets while all of them compute (shared cores, memory bandwidth and
  // caches included), which the predictors are calibrated on.
  double loaded_fwd_ms = 0, loaded_bwd_ms = 0;
};

// The plain kernel (attention_forward + attention_backward) on the whole sequence with ONE intra-op
// thread, on rank 0 only; the other ranks wait in a broadcast of each run's times, outside the
// clock. Then the loaded run: every rank at once, a barrier before each run. Global tensors in.
SingleRankTimes time_single_rank(Communicator& comm, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& dout, const Mask& mask, const TimingPlan& timing);

}  // namespace longhaul::bench
