// `longhaul bench dd-cp`: --cp auto against every fixed CP degree on the same DD steps of a real
// corpus (benchmarks/dd_cp/dd_cp_bench.h). Run it under mpirun: the world is the W ranks.
#include <iostream>

#include "benchmarks/dd_cp/dd_cp_bench.h"
#include "cli/cli.h"

namespace longhaul::cli {

int bench_dd_cp(const std::vector<std::string>& args) {
  InitOptions init_opts;
  double timeout_s = 300;
  bool json = false;
  bench::DdCpBenchOptions o;
  train::TrainOptions& t = o.train;
  t.model.dim = 128;
  t.model.heads = 4;
  t.model.kv_heads = 4;
  t.model.layers = 2;
  t.buckets = {8, 13};
  t.tokens_per_step = 8192;
  t.curriculum = data::Curriculum::Uniform;
  std::string strategy = "ring", layout = "zigzag";
  po::options_description desc("longhaul bench dd-cp");
  desc.add_options()
      ("data", po::value(&o.data), "token store (`longhaul prep`); default: rank 0 preps --corpus")
      ("corpus", po::value(&o.corpus), "directory of text files (default: this machine's Python stdlib, *.py)")
      ("workdir", po::value(&o.workdir), "keep the corpus store here (default: a temporary directory)")
      ("steps", po::value(&o.steps)->default_value(o.steps), "timed steps per configuration (the same batches)")
      ("warmup", po::value(&o.warmup)->default_value(o.warmup), "untimed steps first")
      ("configs", po::value(&o.configs)->multitoken(), "auto and/or degrees (default: auto W W/2 ... 1); one given twice runs twice, pooled "
       "(interleave passes against drift: auto 4 2 1 auto 4 2 1)")
      ("min-log2", po::value(&t.buckets.min_log2)->default_value(t.buckets.min_log2), "shortest bucket 2^m")
      ("max-log2", po::value(&t.buckets.max_log2)->default_value(t.buckets.max_log2), "longest bucket 2^M")
      ("tokens-per-step", po::value(&t.tokens_per_step)->default_value(t.tokens_per_step), "tokens per step over the world")
      ("dim", po::value(&t.model.dim)->default_value(t.model.dim), "model width")
      ("layers", po::value(&t.model.layers)->default_value(t.model.layers), "transformer blocks")
      ("heads", po::value(&t.model.heads)->default_value(t.model.heads), "attention heads")
      ("kv-heads", po::value(&t.model.kv_heads)->default_value(t.model.kv_heads), "key/value heads")
      ("strategy", po::value(&strategy)->default_value(strategy), "CP strategy inside a group")
      ("layout", po::value(&layout)->default_value(layout), "layout inside a group")
      ("memory-gib", po::value(&t.memory_gib)->default_value(0), "auto: memory per rank for one attention layer")
      ("network", po::value(&t.network)->default_value(t.network), "auto: the planner's network preset")
      ("kernel-gflops", po::value(&t.kernel_gflops)->default_value(0), "auto: attention GFLOP/s per rank (0: measure)")
      ("dense-gflops", po::value(&t.dense_gflops)->default_value(0), "auto: the model's GFLOP/s outside attention per rank (0: measure)")
      ("json", po::bool_switch(&json), "JSON lines instead of the tables");
  add_world_options(desc, init_opts, timeout_s);
  po::variables_map vm;
  if (!parse(args, desc, vm, "mpirun -np 4 longhaul bench dd-cp [options]")) return 0;
  t.cp_options.strategy = strategy_from_string(strategy);
  t.cp_options.layout = layout_from_string(layout);
  init_opts.log_config = !json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    check_same_options(*world.comm(), desc, vm, "bench dd-cp");
    const bench::DdCpBenchResult r = bench::run_dd_cp_bench(world.comm(), o);
    if (world.rank() != 0) return 0;
    if (json) {
      bench::print_json(std::cout, r.rows);
      bench::print_json(std::cout, r.buckets);
      return 0;
    }
    std::cout << "# bench dd-cp: world " << world.size() << ", " << t.tokens_per_step << " tokens/step, buckets 2^"
              << t.buckets.min_log2 << "..2^" << t.buckets.max_log2 << ", " << t.model.shape() << ", " << strategy
              << "/" << layout << ", " << o.steps << " timed steps per configuration (the same batches), times max over ranks\n";
    for (const auto& n : r.notes) std::cout << "# " << n << "\n";
    bench::print_table(std::cout, r.rows);
    std::cout << "\n# per bucket: measured_compute_ms = attention + rest of the step on the busiest rank (no grad sync/optimiser); "
                 "predicted_ms = the planner's attention + dense on the busiest rank\n";
    bench::print_table(std::cout, r.buckets);
    return 0;
  });
}

}  // namespace longhaul::cli
