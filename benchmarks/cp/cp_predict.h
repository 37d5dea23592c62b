// The two predictions printed beside every measured `bench attention` distributed row: the
// planner's closed-form cost model (parallel/planner.h) and the simulator, which runs the
// strategy's real schedule on shape-only tensors (parallel/simulate.h). Both are calibrated on the
// kernel measured in the same run (the whole sequence on every rank at once), so what they test
// is the schedule, the balance and the communication, not the kernel's absolute speed.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

#include "attention/mask.h"
#include "core/virtual_clock.h"
#include "parallel/options.h"

namespace longhaul::bench {

struct CpPredictionInput {
  Strategy strategy = Strategy::Ring;
  Layout layout = Layout::Zigzag;
  int ulysses_degree = 1;
  std::string mask_name;
  Mask mask = Mask::causal();
  int64_t T = 0, H = 0, H_kv = 0, D = 0;
  int P = 1;
  int64_t elem_bytes = 4;
  // The single-rank baseline: the plain kernel on the whole sequence, one thread, alone.
  double single_fwd_ms = 0, single_bwd_ms = 0;
  // The same kernel while every rank runs it at once, with the ranks' own threads: what the
  // predictors' kernel rates come from (cores shared by oversubscribed ranks, memory bandwidth
  // shared by busy ones: both are in it).
  double loaded_fwd_ms = 0, loaded_bwd_ms = 0;
};

struct CpPredictions {
  double planner_ms = 0;    // forward + backward of the busiest rank
  double simulated_ms = 0;  // forward + backward, the slowest rank's virtual time
};

// NaN for a predictor that cannot model the row (the planner has no row for the strategy/layout).
CpPredictions predict_cp_row(const CpPredictionInput& in);

// `bench cp-gpu`: P thread-ranks emulating P GPUs on one. Every rank's kernel gets 1/P of the GPU
// (the single kernel's rates measured in the same run, on the area of 128 × 128 tiles), and every
// transfer is a device copy between two thread-ranks at the copy rate measured in the same run,
// shared by the P ranks that copy at once (one HBM). The strategy's real schedule runs in the
// simulator (parallel/simulate.h); returned: forward + backward of the slowest rank, ms.
struct GpuEmulationPredictionInput {
  Strategy strategy = Strategy::Ring;
  Layout layout = Layout::Zigzag;
  Mask mask = Mask::causal();
  int64_t T = 0, H = 0, H_kv = 0, D = 0;
  int P = 1;
  c10::ScalarType dtype = c10::ScalarType::BFloat16;
  double single_fwd_ms = 0, single_bwd_ms = 0;   // the plain kernel on the whole sequence
  double copy_latency_s = 0, copy_bytes_per_s = 0;  // one transfer between two thread-ranks, alone
  // Thread-block start-ups (tiles' time per working tile, forward / backward): the single block
  // paid its own, each shard's call pays its own (virtual_clock.h).
  double setup_tiles_fwd = virtual_clock::kGpuForwardSetupTiles, setup_tiles_bwd = virtual_clock::kGpuBackwardSetupTiles;
};
double predict_gpu_emulation_ms(const GpuEmulationPredictionInput& in);

// The GPU kernels' tile (query × key rows) the emulation's prediction charges.
constexpr int64_t kGpuTile = virtual_clock::kGpuTileRows;

// This machine's network as both predictors see it: `longhaul bench comm` over shared memory
// (the planner's "this-machine" preset: a per-message cost through the progress engine and the
// copy bandwidth).
constexpr double kThisMachineLatencyS = 7e-6;
constexpr double kThisMachineBytesPerS = 10e9;

}  // namespace longhaul::bench
