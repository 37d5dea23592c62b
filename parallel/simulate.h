// The CP simulator: runs a strategy's real schedule — ContextParallel::forward and backward, the
// same code that sends and computes — on P thread-ranks over the `sim` communicator
// (runtime/comm/sim) with shape-only (meta) tensors: transfers take virtual time on a modelled
// network (NVLink inside a node, InfiniBand across), kernels the masked area's FLOPs at a model
// rate (core/virtual_clock.h), Ring Self-Attention's dense products and passes at a GEMM and a
// memory rate, and nothing is computed. What comes out per rank: forward and
// backward time, compute, exposed communication, bytes sent, peak tracked memory. The bytes are
// the strategy's own (its StepGroups count them), so they equal a real run's.
#pragma once

#include <c10/core/ScalarType.h>

#include <chrono>
#include <vector>

#include "attention/mask.h"
#include "core/virtual_clock.h"
#include "parallel/options.h"
#include "runtime/comm/sim/communicator.h"

namespace longhaul {

struct SimulationSetup {
  int64_t T = 0, H = 0, H_kv = 0, D = 0;
  int P = 1;
  c10::ScalarType dtype = c10::ScalarType::BFloat16;
  Options options;  // strategy, layout, ulysses_degree, inner, overlap
  Mask mask = Mask::causal();
  sim::Network network;
  virtual_clock::KernelModel kernel;
  bool backward = true;
  // NCCL's rules on top (runtime/comm/nccl_order): point-to-point matched in posting order per
  // pair, one stream per rank; a schedule that would deadlock or mismatch under NCCL fails here.
  bool nccl_order = false;
  // Real time a rank may wait for a peer: a deadlocked schedule fails after it. Hundreds of rank
  // threads on a few cores need minutes between two steps of one rank.
  std::chrono::milliseconds timeout{std::chrono::seconds(600)};
};

struct RankSimulation {
  double forward_s = 0, backward_s = 0;  // virtual seconds
  double compute_s = 0, comm_wait_s = 0;  // of forward + backward
  int64_t bytes_fwd = 0, bytes_bwd = 0;
  int64_t peak_bytes = 0;  // the strategy's tracked buffers (inputs and outputs not included)
};

struct Simulation {
  std::vector<RankSimulation> ranks;
  double forward_s = 0, backward_s = 0;  // the slowest rank's
  int64_t area = 0;                      // visible pairs of the whole mask
  // LongCA-bench's accounting: masked-area FLOPs (forward 4·area·H·D, backward 2.5×) per rank
  // and second of the slowest rank.
  double forward_tflops_per_rank() const;
  double backward_tflops_per_rank() const;
  int64_t H = 0, D = 0;
};

// Throws what the strategy throws (an unsupported layout, heads Ulysses cannot split) and
// TimeoutError naming the waited operation when the schedule deadlocks.
Simulation simulate(const SimulationSetup& setup);

}  // namespace longhaul
