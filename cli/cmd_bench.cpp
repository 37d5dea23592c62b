// `longhaul bench <what>`: the benchmarks (data and dd-cp have their own files).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <iostream>
#include <mutex>

#include "benchmarks/comm/comm_bench.h"
#include "benchmarks/cp/gpu_emulation.h"
#include "benchmarks/cp/long_sequence.h"
#include "benchmarks/layer/layer_bench.h"
#include "cli/cli.h"
#include "runtime/comm/local/communicator.h"
#include "core/errors.h"

namespace longhaul::cli {
namespace {

// Prints rows (table or JSON) and returns the exit code: non-zero when any row has wrong > 0.
int report(const std::vector<bench::Row>& rows, bool json, const std::string& header) {
  if (!json) std::cout << header << "\n";
  bench::print_rows(std::cout, rows, json);
  const int64_t wrong = bench::total_wrong(rows);
  if (wrong > 0) std::cerr << "longhaul bench: " << wrong << " wrong elements\n";
  return wrong > 0 ? 3 : 0;
}

int bench_comm(const std::vector<std::string>& args) {
  InitOptions init_opts;
  double timeout_s = 300;
  bench::CommBenchOptions o;
  bool json = false, no_overlap = false;
  int local = 0;
  std::vector<std::string> ops;
  po::options_description desc("longhaul bench comm");
  add_world_options(desc, init_opts, timeout_s);
  desc.add_options()
      ("min-bytes", po::value(&o.min_bytes)->default_value(o.min_bytes), "smallest message, bytes")
      ("max-bytes", po::value(&o.max_bytes)->default_value(o.max_bytes), "largest message, bytes")
      ("factor", po::value(&o.size_factor)->default_value(o.size_factor), "size step factor")
      ("iters", po::value(&o.iters)->default_value(o.iters), "timed repetitions (fewer for large sizes)")
      ("ops", po::value(&ops)->multitoken(), "any of: ring exchange all_to_all all_gather (the default) reduce_scatter reduce_scatter_v")
      ("no-overlap", po::bool_switch(&no_overlap), "skip the overlap row")
      ("overlap-bytes", po::value(&o.overlap_bytes)->default_value(o.overlap_bytes), "message size of the overlap row")
      ("local", po::value(&local)->default_value(0), "run P thread-ranks of the local backend instead of MPI")
      ("json", po::bool_switch(&json), "JSON lines instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "[mpirun -np P] longhaul bench comm [options]")) return 0;
  if (!ops.empty()) o.ops = ops;
  o.overlap = !no_overlap && local == 0;

  if (local > 0) {
    CommOptions co;
    co.timeout = init_opts.timeout;
    std::vector<bench::Row> rows;
    std::mutex mu;
    local::run_ranks(local, [&](Communicator& comm) {
      auto r = bench::run_comm_bench(comm, o);
      std::lock_guard<std::mutex> lock(mu);
      if (comm.rank() == 0) rows = r;
    }, co);
    return report(rows, json, "# bench comm: backend local (threads in one process), P=" + std::to_string(local));
  }

  if (o.overlap) {
    // The idle-progress check's baseline: a single-threaded GEMM before any communicator exists.
    const int saved = at::get_num_threads();
    at::set_num_threads(1);
    o.idle_gemm_n = 1024;
    o.gemm_before_comm_ms = bench::time_gemm_ms(o.idle_gemm_n, 7);
    at::set_num_threads(saved);
  }
  init_opts.log_config = !json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    auto& comm = *world.comm();
    check_same_options(comm, desc, vm, "bench comm");
    auto rows = bench::run_comm_bench(comm, o);
    std::vector<bench::Row> overlap;
    if (o.overlap && comm.size() >= 2) {
      const int saved = at::get_num_threads();
      overlap.push_back(bench::run_overlap_bench(comm, o));
      at::set_num_threads(saved);
    }
    if (comm.rank() != 0) return 0;
    const std::string head = "# bench comm: backend " + comm.backend() + ", P=" + std::to_string(comm.size());
    int rc = report(rows, json, head);
    if (!overlap.empty()) {
      if (!json) std::cout << "\n";
      rc = std::max(rc, report(overlap, json, "# overlap: exchange posted, GEMM, then wait()"));
    }
    return rc;
  });
}


int bench_long(const std::vector<std::string>& args) {
  InitOptions init_opts;
  double timeout_s = 600;
  bench::LongSequenceOptions o;
  bool json = false, no_check = false;
  po::options_description desc("longhaul bench long");
  add_world_options(desc, init_opts, timeout_s);
  desc.add_options()
      ("tokens", po::value(&o.T)->default_value(o.T), "tokens")
      ("window", po::value(&o.window)->default_value(o.window), "causal window (left extent); 0 = causal")
      ("heads", po::value(&o.H)->default_value(o.H), "query heads")
      ("kv-heads", po::value(&o.H_kv)->default_value(o.H_kv), "key/value heads")
      ("head-dim", po::value(&o.D)->default_value(o.D), "head dim")
      ("strategy", po::value(&o.strategy)->default_value(o.strategy), "rsa, ring, allgather, tokenring, ulysses")
      ("layout", po::value(&o.layout)->default_value(o.layout), "contiguous, zigzag, striped or balanced")
      ("no-check", po::bool_switch(&no_check), "skip the single-process comparison")
      ("json", po::bool_switch(&json), "JSON line instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "mpirun -np P longhaul bench long [options]")) return 0;
  LH_CHECK(o.window >= 0, "bench long: --window ", o.window, ": expected >= 0 (0: causal)");
  o.check = !no_check;
  init_opts.log_config = !json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    check_same_options(*world.comm(), desc, vm, "bench long");
    bench::Row row = bench::run_long_sequence(*world.comm(), o);
    if (world.rank() != 0) return 0;
    return report({row}, json, "# bench long: one sequence through context parallelism (float32; tolerance on the "
                               "max relative error vs one process)");
  });
}

int bench_cp_gpu(const std::vector<std::string>& args) {
  bench::GpuEmulationOptions o;
  bool json = false;
  po::options_description desc("longhaul bench cp-gpu");
  desc.add_options()
      ("ranks", po::value(&o.ranks)->multitoken(), "emulated rank counts (default 4 8)")
      ("strategies", po::value(&o.strategies)->multitoken(), "subset of: ring tokenring allgather ulysses")
      ("layout", po::value(&o.layout)->default_value(o.layout), "contiguous, zigzag, striped or balanced")
      ("mask", po::value(&o.mask)->default_value(o.mask), "full or causal")
      ("tokens", po::value(&o.T)->default_value(o.T), "tokens")
      ("heads", po::value(&o.H)->default_value(o.H), "query heads")
      ("kv-heads", po::value(&o.H_kv)->default_value(o.H_kv), "key/value heads")
      ("head-dim", po::value(&o.D)->default_value(o.D), "head dim")
      ("dtype", po::value(&o.dtype)->default_value(o.dtype), "bf16, fp16 or fp32")
      ("iters", po::value(&o.timing.iters)->default_value(o.timing.iters), "timed runs")
      ("json", po::bool_switch(&json), "JSON lines instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "longhaul bench cp-gpu [options]   (one CUDA device; P thread-ranks on it)")) return 0;
  return guarded(0, [&] {
    return report(bench::run_gpu_emulation(o), json,
                  "# bench cp-gpu: P thread-ranks of the local backend on one GPU, explicit forward/backward, "
                  "median times (max over ranks); TFLOP/s on the masked area, fwd+bwd = 3.5 x 4·area·H·D");
  });
}

int bench_layer(const std::vector<std::string>& args) {
  bench::LayerBenchOptions o;
  bool json = false;
  po::options_description desc("longhaul bench layer");
  desc.add_options()
      ("ranks", po::value(&o.ranks)->multitoken(), "emulated rank counts (default 1 4 8; 1 always runs as the reference)")
      ("strategy", po::value(&o.strategy)->default_value(o.strategy), "rsa, ring, allgather, tokenring, ulysses")
      ("layout", po::value(&o.layout)->default_value(o.layout), "contiguous, zigzag, striped or balanced")
      ("tokens", po::value(&o.T)->default_value(o.T), "tokens of the sequence")
      ("dim", po::value(&o.dim)->default_value(o.dim), "model width")
      ("heads", po::value(&o.heads)->default_value(o.heads), "query heads")
      ("kv-heads", po::value(&o.kv_heads)->default_value(o.kv_heads), "key/value heads")
      ("dtype", po::value(&o.dtype)->default_value(o.dtype), "bf16, fp16, fp32 or fp64")
      ("device", po::value(&o.device)->default_value(o.device), "cuda (one GPU, a stream per rank) or cpu")
      ("iters", po::value(&o.timing.iters)->default_value(o.timing.iters), "timed runs")
      ("json", po::bool_switch(&json), "JSON lines instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "longhaul bench layer [options]   (P thread-ranks on one device)")) return 0;
  return guarded(0, [&] {
    return report(bench::run_layer_bench(o), json,
                  "# bench layer: one transformer block fwd+bwd, causal, P thread-ranks of the local backend on one "
                  "device, attention by explicit CP calls; median times (max over ranks); peak memory per rank; "
                  "errors vs P=1 (wrong = 1 beyond the dtype's tolerance: exit code 3)");
  });
}

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
  const std::string usage =
      "longhaul bench <attention|kernel|cp|comm|long|cp-gpu|layer|data|dd-cp> [options]   (longhaul bench attention "
      "--help)\n  attention: the long-context attention benchmark (kernel and distributed levels); kernel and cp are "
      "it with --level kernel / --level distributed";
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: " << usage << "\n";
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "comm") return bench_comm(rest);
  if (args[0] == "attention") return bench_attention(rest, {"kernel", "distributed"});
  if (args[0] == "kernel") return bench_attention(rest, {"kernel"});
  if (args[0] == "cp") return bench_attention(rest, {"distributed"});
  if (args[0] == "long") return bench_long(rest);
  if (args[0] == "cp-gpu") return bench_cp_gpu(rest);
  if (args[0] == "layer") return bench_layer(rest);
  if (args[0] == "data") return bench_data(rest);
  if (args[0] == "dd-cp") return bench_dd_cp(rest);
  throw InvalidArgument("unknown benchmark '" + args[0] +
                        "', expected: attention, kernel, cp, comm, long, cp-gpu, layer, data or dd-cp");
}

}  // namespace longhaul::cli
