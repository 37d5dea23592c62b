// `longhaul bench dd-cp`: dataset decomposition × context parallelism on a real corpus. The same
// DD steps (same seed, same batches) are trained with `--cp auto` and with every fixed degree
// W, W/2, …, 1 of the world, one after another in one run; rows: tokens/s (step time: the max
// over ranks), the gain over fixed CP = W, the split of the step (means over ranks) into attention
// compute, exposed communication wait, gradient sync (with the wait for the slowest rank) and the
// rest; and per bucket × degree the planner's predicted step (attention + dense
// work on the busiest rank) against the measured one (attention + rest: the step without the
// gradient sync and optimiser, which the planner leaves out).
#pragma once

#include <string>
#include <vector>

#include "benchmarks/common/report.h"
#include "runtime/comm/comm.h"
#include "train/options.h"

namespace longhaul::bench {

struct DdCpBenchOptions {
  std::string data;          // token store (`longhaul prep`); empty: rank 0 preps the corpus below
  std::string corpus;        // directory of text files; empty: this machine's Python stdlib (*.py)
  std::string workdir;       // where the corpus store goes; empty: a temporary directory
  train::TrainOptions train; // model, buckets, tokens per step, strategy/layout, planner inputs
  int64_t steps = 30;        // timed steps per configuration (the same batches for every one)
  int64_t warmup = 3;        // untimed steps before them
  std::vector<std::string> configs;  // "auto" and degrees; empty: auto, W, W/2, ..., 1
};

struct DdCpBenchResult {
  std::vector<Row> rows;     // one per configuration
  std::vector<Row> buckets;  // per configuration × bucket: measured vs predicted
  std::vector<std::string> notes;
};

// A collective over `world`; rank 0's result holds the rows (max over ranks of the times).
DdCpBenchResult run_dd_cp_bench(const CommPtr& world, const DdCpBenchOptions& options);

}  // namespace longhaul::bench
