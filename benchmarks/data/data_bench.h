// `longhaul bench data`: the data pipeline on a real corpus (by default this machine's Python
// standard library sources): prep throughput, loader throughput (sequential and random), the
// fraction of a simulated training step the prefetching loader stalls, and the attention cost per
// kept token of DD versus concat-and-chunk (docs/data.md defines each measure).
#pragma once

#include <string>
#include <vector>

#include "benchmarks/common/report.h"
#include "data/decomposition.h"

namespace longhaul::bench {

struct DataBenchOptions {
  std::string corpus;  // a directory; empty: the Python stdlib (sysconfig's "stdlib" path)
  std::string glob = "*.py";
  std::vector<std::string> exclude_dirs{"site-packages", "__pycache__"};
  int64_t max_files = 0;  // 0: all
  std::string workdir;    // where the store is written; empty: a temporary directory, removed after
  data::BucketRange range{8, 13};
  int64_t tokens_per_step = int64_t(1) << 16;  // b of the loader rows
  double compute_ms_per_8k = 10;               // simulated training compute per 8192 tokens
  int64_t stall_steps = 100;                   // steps of the simulated training loop
  double loader_budget_s = 5;                  // at most this long per loader throughput row
  int prefetch_depth = 2;
  int64_t model_dim = 2048;  // H · D of the FLOP rows
  uint64_t seed = 0;
};

DataBenchOptions quick_data_options();  // a few hundred files, a few steps: CI

// The default corpus: this machine's Python standard library (python3's sysconfig "stdlib").
// InvalidArgument when there is none.
std::string default_corpus();

struct DataBenchResult {
  std::vector<Row> rows;       // {measure, value, unit}
  std::vector<Row> histogram;  // document lengths by power of two (table)
  std::vector<Row> histogram_measures;  // the same as {measure, value, unit} rows (JSON)
  std::vector<std::string> notes;
};

// Throws Unsupported without HDF5 (the benchmark writes and reads a token store).
DataBenchResult run_data_bench(const DataBenchOptions& options);

}  // namespace longhaul::bench
