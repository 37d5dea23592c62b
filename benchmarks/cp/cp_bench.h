// `longhaul bench cp`: context-parallel attention over strategy × layout × mask × T × P, forward
// and backward: median time (max over ranks), per-rank GFLOP/s on the masked area, efficiency
// against the plain kernel on the whole sequence with one thread (measured in the same run), bytes
// sent per rank in the forward next to the formula of docs/parallel.md minus the steps the mask skips,
// peak tracked tensor bytes per rank, and a built-in check against the float64 reference
// (`wrong`). Metrics are defined in benchmarks/README.md.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "benchmarks/common/report.h"
#include "benchmarks/common/timing.h"
#include "benchmarks/kernel/mask_cases.h"
#include "runtime/comm/comm.h"

namespace longhaul::bench {

// One sweep: every combination of its lists (none may be empty). kv_heads 0 means H_kv = H.
struct CpTarget {
  std::string name;                   // "a", "b", "c", "quick": for notes
  std::vector<std::string> strategies;  // rsa ring allgather
  std::vector<std::string> layouts;     // contiguous zigzag striped
  std::vector<std::string> masks;       // full causal documents causal_documents causal_window
  std::vector<int64_t> seq_lens;        // T
  std::vector<int64_t> heads;           // H
  std::vector<int64_t> kv_heads;        // H_kv
  std::vector<int64_t> head_dims;       // D
  int ranks = 0;                        // P; 0: the world size. Other values run only at that size.
};

struct CpBenchOptions {
  std::vector<CpTarget> targets;  // run in order; a configuration in several runs once
  MaskCaseOptions masks;
  TimingPlan timing;
  uint64_t seed = 42;         // of the inputs
  bool check = true;          // the `wrong` column (-1 when off)
  int64_t check_t = 512;      // sequence length of the check (min with T)
  bool baseline = true;       // the single-rank columns (efficiency NaN when off)
  int ranks_per_host = 1;     // processes sharing this machine's memory (rsa's fit test)
  double memory_fraction = 0.7;  // rsa runs only if its estimated scores fit this share of MemAvailable
  bool predict = true;        // the planner and simulator columns (needs the baseline)
  // Called on rank 0 before each configuration (index from 1, count, description).
  std::function<void(size_t, size_t, const std::string&)> progress;
};

// The default run (the configurations of benchmarks/results/cp_cpu_p2.txt, fp32).
CpBenchOptions default_cp_options();
// A small sweep for CI: every strategy, layout and mask at T ≤ 1024, a few seconds.
CpBenchOptions quick_cp_options();

// Replaces, in every target, each dimension that `given` sets (non-empty list).
void override_targets(std::vector<CpTarget>& targets, const CpTarget& given);

struct CpBenchResult {
  std::vector<Row> rows;
  std::vector<std::string> notes;  // "# …" lines: skipped configurations and why
};

// Collective over `comm` (world = the CP group). Validates every configuration first (names,
// head counts), then runs them; rank 0's result holds the rows (other ranks get the same).
CpBenchResult run_cp_bench(Communicator& comm, const CpBenchOptions& options);

// What makes the run fail: rows with wrong > 0 or bytes_sent != bytes_formula, one line each.
std::vector<std::string> cp_failures(const std::vector<Row>& rows);

}  // namespace longhaul::bench
