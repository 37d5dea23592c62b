// `longhaul bench layer`: one transformer block (train/'s transformer_block: RMSNorm, q/k/v with
// rotary embeddings, attention, output projection, SwiGLU MLP) forward + backward over a sequence
// sharded on P thread-ranks of the local backend — on one GPU (each rank on its own CUDA stream:
// the emulated ring) or on the CPU. The attention runs by explicit ContextParallel forward/backward
// calls, timed on their own (the row's attention part); autograd covers the rest of the block (on
// the rank's own thread: local::enter_device_rank turns off autograd's shared device threads):
//   y.backward(dy) → d(attention out); ContextParallel::backward → dq, dk, dv; backward({q,k,v}).
// Per row: median fwd/bwd time (max over ranks), the attention's part of it, tokens/s of the whole
// sequence, peak memory per rank (CUDA: the device's peak allocated bytes over the timed runs / P —
// the ranks share one allocator; CPU: peak resident growth / P), and the error of the output and
// of the weight gradients (summed over ranks) against P=1 on the same inputs, with `wrong` = 1 where
// either exceeds the dtype's tolerance (fp64 1e-10, fp32 1e-4, bf16/fp16 5e-2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "benchmarks/common/report.h"
#include "benchmarks/common/timing.h"

namespace longhaul::bench {

struct LayerBenchOptions {
  std::vector<int> ranks{1, 4, 8};  // 1 is the single-rank reference (always run first)
  std::string strategy = "ring", layout = "zigzag";
  int64_t T = 131072, dim = 2048, heads = 16, kv_heads = 16;
  std::string dtype = "bf16";    // bf16, fp16, fp32, fp64
  std::string device = "cuda";   // cuda or cpu
  TimingPlan timing{1, 5, 30.0};
  uint64_t seed = 7;
};

std::vector<Row> run_layer_bench(const LayerBenchOptions& options);

}  // namespace longhaul::bench
