// `longhaul bench <what>`: the benchmarks (data and dd-cp have their own files).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <iostream>
#include <mutex>

#include "benchmarks/comm/comm_bench.h"
#include "benchmarks/cp/cp_bench.h"
#include "benchmarks/cp/gpu_emulation.h"
#include "benchmarks/cp/long_sequence.h"
#include "benchmarks/kernel/kernel_bench.h"
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
  int64_t wrong = 0;
  for (const auto& r : rows)
    if (auto* w = r.find("wrong")) wrong += std::get<int64_t>(*w);
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
      ("ops", po::value(&ops)->multitoken(), "subset of: ring exchange all_to_all all_gather")
      ("no-overlap", po::bool_switch(&no_overlap), "skip the overlap row")
      ("overlap-bytes", po::value(&o.overlap_bytes)->default_value(o.overlap_bytes), "message size of the overlap row")
      ("local", po::value(&local)->default_value(0), "run P thread-ranks of the local backend instead of MPI")
      ("json", po::bool_switch(&json), "JSON lines instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "[mpirun -np P] longhaul bench comm [options]")) return 0;
  if (!ops.empty()) o.ops = ops;
  init_opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
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


// Sets `field` from an option given on the command line (not from its default).
template <typename T>
void take(const po::variables_map& vm, const char* name, T& field) {
  if (vm.count(name)) field = vm[name].as<T>();
}

// Options the kernel and CP sweeps share: repetitions, documents, window, seeds, check size.
void add_sweep_options(po::options_description& desc) {
  desc.add_options()
      ("iters", po::value<int>(), "timed repetitions at most (default: 5 kernel, 3 cp; --quick fewer)")
      ("warmup", po::value<int>(), "untimed repetitions first (default 1)")
      ("budget-s", po::value<double>(), "stop a row's timed repetitions after this many seconds (default 10)")
      ("doc-min", po::value<int64_t>(), "shortest document (default 256; --quick 64)")
      ("doc-max", po::value<int64_t>(), "longest document (default: 4096 kernel, 8192 cp; --quick 256)")
      ("doc-seed", po::value<uint64_t>(), "seed of the document lengths")
      ("window-left", po::value<int64_t>(), "causal_window: keys up to this far back; the sliding-window families' w (default 1024; --quick 128)")
      ("window-right", po::value<int64_t>(), "causal_window: keys up to this far ahead (default 0)")
      ("seed", po::value<uint64_t>(), "seed of the inputs");
}

template <typename SweepOptions>
void take_sweep_options(const po::variables_map& vm, SweepOptions& o) {
  take(vm, "iters", o.timing.iters);
  take(vm, "warmup", o.timing.warmup);
  take(vm, "budget-s", o.timing.budget_s);
  take(vm, "doc-min", o.masks.doc_min);
  take(vm, "doc-max", o.masks.doc_max);
  take(vm, "doc-seed", o.masks.seed);
  take(vm, "window-left", o.masks.window_left);
  take(vm, "window-right", o.masks.window_right);
  take(vm, "seed", o.seed);
  take(vm, "check-t", o.check_t);
}

int bench_kernel(const std::vector<std::string>& args) {
  InitOptions init_opts;
  bench::KernelTarget given;
  bool json = false, quick = false, no_sdpa = false, no_check = false;
  po::options_description desc("longhaul bench kernel");
  desc.add_options()
      ("quick", po::bool_switch(&quick), "a small sweep for CI (T <= 1024, a few seconds) instead of the default run")
      ("masks", po::value(&given.masks)->multitoken(), "subset of: full causal documents causal_documents causal_window and the families full_document "
       "causal_document share_question causal_blockwise prefix_lm_causal prefix_lm_document sliding_window "
       "sliding_window_causal global_sliding_window block_causal_document")
      ("tokens", po::value(&given.seq_lens)->multitoken(), "sequence lengths")
      ("heads", po::value(&given.heads)->multitoken(), "query heads")
      ("kv-heads", po::value(&given.kv_heads)->multitoken(), "key/value heads (0: = H; must divide H)")
      ("head-dim", po::value(&given.head_dims)->multitoken(), "head dims")
      ("dtypes", po::value(&given.dtypes)->multitoken(), "subset of: fp32 bf16 fp16 fp64")
      ("backends", po::value(&given.backends)->multitoken(), "subset of: cpu cuda reference (reference: small T only)")
      ("passes", po::value(&given.passes)->multitoken(), "subset of: fwd fwd+bwd")
      ("check-t", po::value<int64_t>(), "sequence length of the built-in check (default 384; --quick 256)")
      ("no-check", po::bool_switch(&no_check), "skip the check against the float64 reference (wrong = -1)")
      ("no-sdpa", po::bool_switch(&no_sdpa), "skip torch's scaled_dot_product_attention")
      ("sdpa-max-t", po::value<int64_t>(), "no SDPA above this T (default 32768)")
      ("sgemm-n", po::value<int64_t>(), "size of the sgemm row (default 2048 on CPU, 8192 on GPU)")
      ("threads", po::value(&init_opts.threads)->default_value(0), "intra-op threads (0: from the CPU affinity)")
      ("json", po::bool_switch(&json), "JSON lines instead of the table");
  add_sweep_options(desc);
  po::variables_map vm;
  if (!parse(args, desc, vm, "longhaul bench kernel [--quick] [options]   (no options: the full default run)"))
    return 0;
  bench::KernelBenchOptions o = quick ? bench::quick_kernel_options() : bench::default_kernel_options();
  bench::override_targets(o.targets, given);
  take_sweep_options(vm, o);
  take(vm, "sdpa-max-t", o.sdpa_max_t);
  take(vm, "sgemm-n", o.sgemm_n);
  o.check = !no_check;
  o.sdpa = !no_sdpa;

  init_opts.backend = Backend::Local;  // one process, no communication: init sets the threads
  init_opts.log_config = !json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    auto result = bench::run_kernel_bench(o);
    const std::string head = "# bench kernel: threads " + std::to_string(at::get_num_threads()) +
                             ", median of up to " + std::to_string(o.timing.iters) + " runs after " +
                             std::to_string(o.timing.warmup) + " warm-up";
    const int rc = report(result.rows, json, head);
    for (const auto& line : result.summary) (json ? std::cerr : std::cout) << line << "\n";
    return rc;
  });
}


// Prints the CP rows and notes; exit code 3 when a row is wrong or its bytes differ from the formula.
int report_cp(const bench::CpBenchResult& result, bool json, const std::string& header) {
  if (!json) std::cout << header << "\n";
  bench::print_rows(std::cout, result.rows, json);
  for (const auto& line : result.notes) (json ? std::cerr : std::cout) << line << "\n";
  const auto failures = bench::cp_failures(result.rows);
  for (const auto& f : failures) std::cerr << "longhaul bench cp: " << f << "\n";
  return failures.empty() ? 0 : 3;
}

int bench_cp(const std::vector<std::string>& args) {
  InitOptions init_opts;
  double timeout_s = 300;
  bench::CpTarget given;
  bool json = false, quick = false, no_check = false, no_baseline = false;
  int local = 0;
  po::options_description desc("longhaul bench cp");
  add_world_options(desc, init_opts, timeout_s);
  desc.add_options()
      ("quick", po::bool_switch(&quick), "a small sweep for CI (T <= 1024, a few seconds) instead of the default run")
      ("local", po::value(&local)->default_value(0), "run P thread-ranks of the local backend instead of MPI")
      ("strategies", po::value(&given.strategies)->multitoken(), "subset of: rsa ring allgather tokenring ulysses hybrid")
      ("layouts", po::value(&given.layouts)->multitoken(), "subset of: contiguous zigzag striped balanced")
      ("masks", po::value(&given.masks)->multitoken(), "subset of: full causal documents causal_documents causal_window and the families full_document "
       "causal_document share_question causal_blockwise prefix_lm_causal prefix_lm_document sliding_window "
       "sliding_window_causal global_sliding_window block_causal_document")
      ("tokens", po::value(&given.seq_lens)->multitoken(), "sequence lengths")
      ("heads", po::value(&given.heads)->multitoken(), "query heads")
      ("kv-heads", po::value(&given.kv_heads)->multitoken(), "key/value heads (0: = H; must divide H)")
      ("head-dim", po::value(&given.head_dims)->multitoken(), "head dims")
      ("ranks", po::value(&given.ranks), "run every target at this P (must equal the world size; default: each target's)")
      ("check-t", po::value<int64_t>(), "sequence length of the built-in check (default 512; --quick 256)")
      ("no-check", po::bool_switch(&no_check), "skip the check against the float64 reference (wrong = -1)")
      ("no-baseline", po::bool_switch(&no_baseline), "skip the single-rank baseline (efficiency empty)")
      ("json", po::bool_switch(&json), "JSON lines instead of the table (notes go to stderr)");
  add_sweep_options(desc);
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "[mpirun -np P --bind-to none] longhaul bench cp [--local P] [--quick] [options]   "
             "(no options: the full default run)"))
    return 0;
  bench::CpBenchOptions o = quick ? bench::quick_cp_options() : bench::default_cp_options();
  bench::override_targets(o.targets, given);
  take_sweep_options(vm, o);
  o.check = !no_check;
  o.baseline = !no_baseline;
  init_opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  auto header = [&](const std::string& backend, int p) {
    return "# bench cp: backend " + backend + ", P=" + std::to_string(p) + ", threads per rank " +
           std::to_string(at::get_num_threads()) + ", fp32, median of up to " + std::to_string(o.timing.iters) +
           " runs after " + std::to_string(o.timing.warmup) + " warm-up (max over ranks)";
  };

  if (local > 0) {
    CommOptions co;
    co.timeout = init_opts.timeout;
    o.ranks_per_host = local;  // thread-ranks share this process's memory
    bench::CpBenchResult result;
    std::string head;
    std::mutex mu;
    local::run_ranks(local, [&](Communicator& comm) {
      if (init_opts.threads > 0) at::set_num_threads(init_opts.threads);
      auto r = bench::run_cp_bench(comm, o);
      std::lock_guard<std::mutex> lock(mu);
      if (comm.rank() == 0) {
        result = std::move(r);
        head = header("local (threads in one process)", local);
      }
    }, co);
    return report_cp(result, json, head);
  }

  init_opts.log_config = !json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    o.ranks_per_host = world.local_size();
    auto& comm = *world.comm();
    auto result = bench::run_cp_bench(comm, o);
    if (comm.rank() != 0) return 0;
    return report_cp(result, json, header(comm.backend(), comm.size()));
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
  o.check = !no_check;
  init_opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  init_opts.log_config = !json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
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
      "longhaul bench <comm|kernel|cp|long|cp-gpu|layer|data|dd-cp> [options]   (longhaul bench comm --help)";
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: " << usage << "\n";
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "comm") return bench_comm(rest);
  if (args[0] == "kernel") return bench_kernel(rest);
  if (args[0] == "cp") return bench_cp(rest);
  if (args[0] == "long") return bench_long(rest);
  if (args[0] == "cp-gpu") return bench_cp_gpu(rest);
  if (args[0] == "layer") return bench_layer(rest);
  if (args[0] == "data") return bench_data(rest);
  if (args[0] == "dd-cp") return bench_dd_cp(rest);
  throw InvalidArgument("unknown benchmark '" + args[0] +
                        "', expected: comm, kernel, cp, long, cp-gpu, layer, data or dd-cp");
}

}  // namespace longhaul::cli
