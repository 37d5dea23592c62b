// `longhaul bench cp-gpu`: context parallelism emulated on ONE GPU — P thread-ranks of the local
// backend, each on its own CUDA stream, hold CUDA shards and run the strategy's explicit forward
// and backward (no autograd). Reported beside the plain kernel on the whole sequence on the same
// GPU: per-rank and aggregate TFLOP/s on the masked area, and the aggregate over the single-kernel
// rate (1.0 = emulation costs nothing beyond the kernel; the ranks share one GPU, so per-rank
// TFLOP/s is at most the single-kernel rate / P), tokens/s of the whole sequence, and the peak
// memory per rank (the strategy's tracked buffers at their high-water mark plus the rank's
// inputs and results; the ranks share one allocator, so the device's own peak cannot be split).
// `max_rel_err`: CP output shards against the single-kernel output on the same inputs.
// `simulated_ms`: the strategy's schedule in the simulator with each rank's kernel at 1/P of the
// single kernel and transfers at the thread-ranks' copy rate, both measured in the run (the
// single row's note: the copy's latency and rate); `measured_over_simulated` holds it to the run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "benchmarks/common/report.h"
#include "benchmarks/common/timing.h"

namespace longhaul::bench {

struct GpuEmulationOptions {
  std::vector<int> ranks{4, 8};
  std::vector<std::string> strategies{"ring", "tokenring", "allgather", "ulysses"};
  std::string layout = "zigzag";
  std::string mask = "causal";  // full or causal
  int64_t T = 65536, H = 16, H_kv = 16, D = 128;
  std::string dtype = "bf16";  // bf16, fp16, fp32
  TimingPlan timing{1, 5, 10.0};
  uint64_t seed = 42;
};

// Rows: one "single" row (the plain kernel), then one per (P, strategy). Needs a CUDA device.
std::vector<Row> run_gpu_emulation(const GpuEmulationOptions& options);

}  // namespace longhaul::bench
