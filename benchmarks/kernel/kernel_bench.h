// `longhaul bench kernel`: local attention kernels over mask × T × H/H_kv × D × dtype × backend,
// forward and forward + backward: median time, GFLOP/s on the masked area, the ratio to torch's
// scaled_dot_product_attention on the same inputs, the fraction of the machine's float32 GEMM
// rate, peak resident-memory growth, and a built-in check against the float64 reference
// (`wrong`). Metrics are defined in benchmarks/README.md.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "benchmarks/common/report.h"
#include "benchmarks/common/timing.h"
#include "benchmarks/kernel/mask_cases.h"

namespace longhaul::bench {

// One sweep: every combination of its lists (none may be empty). kv_heads 0 means H_kv = H.
struct KernelTarget {
  std::vector<std::string> masks;     // full causal documents causal_documents causal_window
  std::vector<int64_t> seq_lens;      // T
  std::vector<int64_t> heads;         // H
  std::vector<int64_t> kv_heads;      // H_kv
  std::vector<int64_t> head_dims;     // D
  std::vector<std::string> dtypes;    // fp32 bf16 fp16 fp64 (or float32 bfloat16 float16 float64)
  std::vector<std::string> backends;  // cpu cuda reference exact exact_cuda (benchmarks/kernel/backends.h)
  std::vector<std::string> passes;    // fwd fwd+bwd
};

struct KernelBenchOptions {
  std::vector<KernelTarget> targets;  // run in order; a configuration in several runs once
  MaskCaseOptions masks;
  TimingPlan timing;
  uint64_t seed = 42;        // of the inputs
  bool check = true;         // the `wrong` column (-1 when off)
  int64_t check_t = 384;     // sequence length of the check (min with T)
  bool sdpa = true;          // the SDPA columns
  int64_t sdpa_max_t = 32768;  // no SDPA above this T (its dense T×T mask, its time)
  int64_t sgemm_n = 0;       // 0: 2048 on the CPU, 8192 on a GPU
  // Called before each configuration (index from 1, count, description).
  std::function<void(size_t, size_t, const std::string&)> progress;
};

// The default run (the configurations of benchmarks/results/kernel_cpu_2threads.txt, fp32, backend cpu).
KernelBenchOptions default_kernel_options();
// A small sweep for CI: every mask, T ≤ 1024, MHA and GQA, a few seconds.
KernelBenchOptions quick_kernel_options();

// Replaces, in every target, each dimension that `given` sets (non-empty list).
void override_targets(std::vector<KernelTarget>& targets, const KernelTarget& given);

struct KernelBenchResult {
  std::vector<Row> rows;             // the sgemm rows last
  std::vector<std::string> summary;  // "# …" lines: rate of each mask relative to causal
};

// Validates every configuration first (names, shapes, CUDA availability, reference sizes), then
// runs them. Throws InvalidArgument / Unsupported with the reason.
KernelBenchResult run_kernel_bench(const KernelBenchOptions& options);

}  // namespace longhaul::bench
