// `longhaul bench data`: the data pipeline benchmark (benchmarks/data/data_bench.h).
#include <iostream>

#include "benchmarks/data/data_bench.h"
#include "cli/cli.h"

namespace longhaul::cli {

int bench_data(const std::vector<std::string>& args) {
  bool json = false, quick = false;
  bench::DataBenchOptions given;
  po::options_description desc("longhaul bench data");
  desc.add_options()
      ("quick", po::bool_switch(&quick), "a small run for CI: 200 files, 10 steps (a few seconds)")
      ("corpus", po::value(&given.corpus), "directory of text files (default: this machine's Python stdlib)")
      ("glob", po::value(&given.glob)->default_value(given.glob), "files to take in the corpus")
      ("max-files", po::value<int64_t>(), "take only the first N files (0: all)")
      ("workdir", po::value(&given.workdir), "keep the token store here (default: a temporary directory)")
      ("b", po::value<int64_t>(), "tokens per step of the loader rows (default 65536)")
      ("m", po::value<int>(), "smallest bucket, log2 (default 8)")
      ("M", po::value<int>(), "largest bucket, log2 (default 13)")
      ("compute-ms-per-8k", po::value<double>(), "simulated compute per 8192 tokens (default 10)")
      ("steps", po::value<int64_t>(), "steps of the simulated training loop (default 100; --quick 10)")
      ("model-dim", po::value<int64_t>(), "H*D of the FLOP rows (default 2048)")
      ("json", po::bool_switch(&json), "JSON lines {measure, value, unit} instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "longhaul bench data [--quick] [--corpus DIR] [options]")) return 0;
  bench::DataBenchOptions o = quick ? bench::quick_data_options() : bench::DataBenchOptions{};
  o.corpus = given.corpus;
  o.glob = given.glob;
  o.workdir = given.workdir;
  if (vm.count("max-files")) o.max_files = vm["max-files"].as<int64_t>();
  if (vm.count("b")) o.tokens_per_step = vm["b"].as<int64_t>();
  if (vm.count("m")) o.range.min_log2 = vm["m"].as<int>();
  if (vm.count("M")) o.range.max_log2 = vm["M"].as<int>();
  if (vm.count("compute-ms-per-8k")) o.compute_ms_per_8k = vm["compute-ms-per-8k"].as<double>();
  if (vm.count("steps")) o.stall_steps = vm["steps"].as<int64_t>();
  if (vm.count("model-dim")) o.model_dim = vm["model-dim"].as<int64_t>();
  if (!given.corpus.empty()) o.exclude_dirs.clear();

  const bench::DataBenchResult r = bench::run_data_bench(o);
  if (json) {
    bench::print_json(std::cout, r.rows);
    bench::print_json(std::cout, r.histogram_measures);
    for (const auto& n : r.notes) std::cerr << "# " << n << "\n";
    return 0;
  }
  std::cout << "# bench data\n";
  for (const auto& n : r.notes) std::cout << "# " << n << "\n";
  bench::print_table(std::cout, r.rows);
  std::cout << "\n# document lengths (tokens, EOS included)\n";
  bench::print_table(std::cout, r.histogram);
  return 0;
}

}  // namespace longhaul::cli
