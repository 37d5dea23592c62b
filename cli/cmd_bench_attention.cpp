// `longhaul bench attention`: the long-context attention benchmark, LongCA-bench's protocol in one
// command. Kernel level: the local kernel over masks × lengths × heads × dtypes × backends ×
// passes against torch's SDPA and the machine's best GEMM. Distributed level: every CP strategy ×
// layout × mask at the world's rank count (weak scaling with --tokens-per-rank), with the
// single-rank baseline of the same run and the planner's and the simulator's predictions beside
// each measurement. `bench kernel` and `bench cp` are this command with one level.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <mutex>
#include <set>

#include "benchmarks/cp/cp_bench.h"
#include "benchmarks/kernel/kernel_bench.h"
#include "cli/cli.h"
#include "core/errors.h"
#include "launch/launcher.h"
#include "runtime/comm/local/communicator.h"

namespace longhaul::cli {
namespace {

// Sets `field` from an option given on the command line (not from its default).
template <typename T>
void take(const po::variables_map& vm, const char* name, T& field) {
  if (vm.count(name)) field = vm[name].as<T>();
}

template <typename SweepOptions>
void take_sweep_options(const po::variables_map& vm, SweepOptions& o) {
  take(vm, "iters", o.timing.iters);
  take(vm, "warmup", o.timing.warmup);
  take(vm, "budget-s", o.timing.budget_s);
  take(vm, "doc-min", o.masks.doc_min);
  take(vm, "doc-max", o.masks.doc_max);
  take(vm, "doc-seed", o.masks.seed);
  take(vm, "doc-mix", o.masks.doc_mix);
  take(vm, "window-left", o.masks.window_left);
  take(vm, "window-right", o.masks.window_right);
  take(vm, "seed", o.seed);
  take(vm, "check-t", o.check_t);
}

// "# [3/40] ring/zigzag/causal T=16384 … (12 s)" on stderr: long sweeps show where they are.
auto progress_printer(const std::string& level) {
  const auto start = std::chrono::steady_clock::now();
  return [level, start](size_t i, size_t n, const std::string& what) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << "# [" << level << " " << i << "/" << n << "] " << what << " (" << static_cast<int64_t>(s)
              << " s)\n";
  };
}

// The level first, so JSON and CSV rows of both levels say which table they belong to.
std::vector<bench::Row> tagged(const std::vector<bench::Row>& rows, const std::string& level) {
  std::vector<bench::Row> out;
  for (const auto& r : rows) {
    bench::Row t;
    t.add("level", level);
    t.cells.insert(t.cells.end(), r.cells.begin(), r.cells.end());
    out.push_back(std::move(t));
  }
  return out;
}

struct Output {
  bench::Format format = bench::Format::Table;
  bool first_block = true;
  // Prints one level's rows under its header (table), or tagged (JSON, CSV); notes go to stdout
  // with the table and to stderr otherwise, so the machine-readable stream stays clean.
  void block(const std::string& level, const std::string& header, const std::vector<bench::Row>& rows,
             const std::vector<std::string>& notes) {
    if (format == bench::Format::Table) {
      if (!first_block) std::cout << "\n";
      std::cout << header << "\n";
    } else if (format == bench::Format::Csv && !first_block) {
      std::cout << "\n";  // a blank line between the levels' CSV blocks (different columns)
    }
    bench::print_rows(std::cout, format == bench::Format::Table ? rows : tagged(rows, level), format);
    for (const auto& line : notes) (format == bench::Format::Table ? std::cout : std::cerr) << line << "\n";
    first_block = false;
  }
};

int kernel_exit_code(const std::vector<bench::Row>& rows) {
  const int64_t wrong = bench::total_wrong(rows);
  if (wrong > 0) std::cerr << "longhaul bench attention: " << wrong << " wrong elements at the kernel level\n";
  return wrong > 0 ? 3 : 0;
}

int distributed_exit_code(const std::vector<bench::Row>& rows) {
  const auto failures = bench::cp_failures(rows);
  for (const auto& f : failures) std::cerr << "longhaul bench attention: " << f << "\n";
  return failures.empty() ? 0 : 3;
}

std::string kernel_header(const bench::KernelBenchOptions& o) {
  return "# bench attention, kernel level: threads " + std::to_string(at::get_num_threads()) + ", median of up to " +
         std::to_string(o.timing.iters) + " runs after " + std::to_string(o.timing.warmup) +
         " warm-up; TFLOP/s on the masked area (fwd 4·area·H·D, bwd 2.5× fwd)";
}

std::string distributed_header(const bench::CpBenchOptions& o, const std::string& backend, int p) {
  return "# bench attention, distributed level: backend " + backend + ", P=" + std::to_string(p) +
         ", threads per rank " + std::to_string(at::get_num_threads()) + ", fp32, median of up to " +
         std::to_string(o.timing.iters) + " runs after " + std::to_string(o.timing.warmup) +
         " warm-up (max over ranks); predicted_ms: planner, simulated_ms: simulator, both calibrated on "
         "single_rank_ms";
}

}  // namespace

int bench_attention(const std::vector<std::string>& args, const std::vector<std::string>& default_levels) {
  InitOptions init_opts;
  double timeout_s = 300;
  bench::KernelTarget kgiven;
  bench::CpTarget cgiven;
  std::vector<std::string> levels;
  std::vector<int64_t> tokens_per_rank;
  bool json = false, csv = false, quick = false, no_check = false, no_baseline = false, no_predict = false,
       no_sdpa = false, no_progress = false;
  int local = 0;
  const std::string names =
      "full causal documents causal_documents causal_window and the families full_document causal_document "
      "share_question causal_blockwise prefix_lm_causal prefix_lm_document sliding_window sliding_window_causal "
      "global_sliding_window block_causal_document";
  po::options_description desc("longhaul bench attention");
  add_world_options(desc, init_opts, timeout_s);
  desc.add_options()
      ("level", po::value(&levels)->multitoken(), "kernel and/or distributed (default: both)")
      ("quick", po::bool_switch(&quick), "a small sweep for CI (T <= 1024, seconds) instead of the default run")
      ("masks", po::value<std::vector<std::string>>()->multitoken(), ("subset of: " + names).c_str())
      ("tokens", po::value<std::vector<int64_t>>()->multitoken(), "sequence lengths T")
      ("tokens-per-rank", po::value(&tokens_per_rank)->multitoken(), "distributed level, weak scaling: T = this × P")
      ("heads", po::value<std::vector<int64_t>>()->multitoken(), "query heads")
      ("kv-heads", po::value<std::vector<int64_t>>()->multitoken(), "key/value heads (0: = H; must divide H)")
      ("head-dim", po::value<std::vector<int64_t>>()->multitoken(), "head dims")
      ("strategies", po::value(&cgiven.strategies)->multitoken(), "distributed: subset of rsa ring allgather tokenring ulysses hybrid")
      ("layouts", po::value(&cgiven.layouts)->multitoken(), "distributed: subset of contiguous zigzag striped balanced")
      ("ranks", po::value(&cgiven.ranks), "distributed: run every target at this P (must equal the world size)")
      ("local", po::value(&local)->default_value(0), "distributed: P thread-ranks of the local backend instead of MPI")
      ("passes", po::value(&kgiven.passes)->multitoken(), "kernel: subset of fwd fwd+bwd")
      ("dtypes", po::value(&kgiven.dtypes)->multitoken(), "kernel: subset of fp32 bf16 fp16 fp64")
      ("backends", po::value(&kgiven.backends)->multitoken(), "kernel: subset of cpu cuda reference exact exact_cuda (reference: small T only; exact: the "
       "exact chunked path alone)")
      ("iters", po::value<int>(), "timed repetitions at most (default: 5 kernel, 3 distributed; --quick fewer)")
      ("warmup", po::value<int>(), "untimed repetitions first (default 1)")
      ("budget-s", po::value<double>(), "stop a row's timed repetitions after this many seconds (default 10)")
      ("doc-min", po::value<int64_t>(), "shortest document (default 256; --quick 64)")
      ("doc-max", po::value<int64_t>(), "longest document (default: 4096 kernel, 8192 distributed; --quick 256)")
      ("doc-seed", po::value<uint64_t>(), "seed of the document lengths")
      ("doc-mix", po::value<std::string>(), "document lengths from a named mix instead of doc-min..doc-max: longca_long (LongCA-bench's long-document mix), longca_short")
      ("window-left", po::value<int64_t>(), "causal_window: keys up to this far back; the sliding-window families' w (default 1024; --quick 128)")
      ("window-right", po::value<int64_t>(), "causal_window: keys up to this far ahead (default 0)")
      ("seed", po::value<uint64_t>(), "seed of the inputs")
      ("check-t", po::value<int64_t>(), "sequence length of the built-in check (default: 384 kernel, 512 distributed; --quick 256)")
      ("no-check", po::bool_switch(&no_check), "skip the check against the float64 reference (wrong = -1)")
      ("no-sdpa", po::bool_switch(&no_sdpa), "kernel: skip torch's scaled_dot_product_attention")
      ("sdpa-max-t", po::value<int64_t>(), "kernel: no SDPA above this T (default 32768)")
      ("sgemm-n", po::value<int64_t>(), "kernel: size of the GEMM yardstick (default 2048 on CPU, 8192 on GPU)")
      ("no-baseline", po::bool_switch(&no_baseline), "distributed: skip the single-rank baseline (and the predictions)")
      ("no-predict", po::bool_switch(&no_predict), "distributed: skip the planner and simulator columns")
      ("no-progress", po::bool_switch(&no_progress), "no progress lines on stderr")
      ("json", po::bool_switch(&json), "JSON lines (key `level` first) instead of the tables; notes to stderr")
      ("csv", po::bool_switch(&csv), "CSV, one block per level (a header line each, a blank line between)");
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "[mpirun -np P --bind-to none] longhaul bench attention [--level kernel distributed] [--quick] "
             "[--local P] [options]   (no options: the full default run of each level)"))
    return 0;
  LH_CHECK(!(json && csv), "bench attention: --json and --csv exclude each other");
  if (levels.empty()) levels = default_levels;
  for (const auto& l : levels)
    LH_CHECK(l == "kernel" || l == "distributed", "bench attention: unknown level '", l,
             "', expected kernel or distributed");
  const bool kernel_level = std::count(levels.begin(), levels.end(), "kernel") > 0;
  const bool distributed_level = std::count(levels.begin(), levels.end(), "distributed") > 0;
  LH_CHECK(tokens_per_rank.empty() || !vm.count("tokens"),
           "bench attention: give --tokens or --tokens-per-rank, not both");
  for (int64_t n : tokens_per_rank) LH_CHECK(n > 0, "bench attention: --tokens-per-rank must be positive, got ", n);
  // The shape flags feed both levels.
  take(vm, "masks", kgiven.masks);
  take(vm, "tokens", kgiven.seq_lens);
  take(vm, "heads", kgiven.heads);
  take(vm, "kv-heads", kgiven.kv_heads);
  take(vm, "head-dim", kgiven.head_dims);
  cgiven.masks = kgiven.masks, cgiven.seq_lens = kgiven.seq_lens, cgiven.heads = kgiven.heads;
  cgiven.kv_heads = kgiven.kv_heads, cgiven.head_dims = kgiven.head_dims;

  bench::KernelBenchOptions ko = quick ? bench::quick_kernel_options() : bench::default_kernel_options();
  bench::override_targets(ko.targets, kgiven);
  take_sweep_options(vm, ko);
  take(vm, "sdpa-max-t", ko.sdpa_max_t);
  take(vm, "sgemm-n", ko.sgemm_n);
  ko.check = !no_check;
  ko.sdpa = !no_sdpa;
  if (!no_progress) ko.progress = progress_printer("kernel");

  bench::CpBenchOptions co = quick ? bench::quick_cp_options() : bench::default_cp_options();
  take_sweep_options(vm, co);
  co.check = !no_check;
  co.baseline = !no_baseline;
  co.predict = !no_predict;
  if (!no_progress) co.progress = progress_printer("distributed");
  auto set_world_size = [&](int p) {  // weak scaling needs P
    if (!tokens_per_rank.empty()) {
      const int ranks = cgiven.ranks > 0 ? cgiven.ranks : p;
      cgiven.seq_lens.clear();
      for (int64_t n : tokens_per_rank) cgiven.seq_lens.push_back(n * ranks);
    }
    bench::override_targets(co.targets, cgiven);
  };

  Output out;
  out.format = json ? bench::Format::Json : csv ? bench::Format::Csv : bench::Format::Table;
  init_opts.log_config = out.format == bench::Format::Table;

  // Thread-ranks (or no distributed level): one process, the kernel level with all its threads.
  if (local > 0 || !distributed_level) {
    init_opts.backend = Backend::Local;
    World world = init(init_opts);
    return guarded(0, [&] {
      int rc = 0;
      if (kernel_level) {
        auto result = bench::run_kernel_bench(ko);
        out.block("kernel", kernel_header(ko), result.rows, result.summary);
        rc = kernel_exit_code(result.rows);
      }
      if (!distributed_level) return rc;
      set_world_size(local);
      CommOptions copts;
      copts.timeout = init_opts.timeout;
      co.ranks_per_host = local;  // thread-ranks share this process's memory and cores
      bench::CpBenchResult result;
      std::string head;
      std::mutex mu;
      local::run_ranks(local, [&](Communicator& comm) {
        if (init_opts.threads > 0) at::set_num_threads(init_opts.threads);
        auto r = bench::run_cp_bench(comm, co);
        std::lock_guard<std::mutex> lock(mu);
        if (comm.rank() == 0) {
          result = std::move(r);
          head = distributed_header(co, "local (threads in one process)", local);
        }
      }, copts);
      out.block("distributed", head, result.rows, result.notes);
      return std::max(rc, distributed_exit_code(result.rows));
    });
  }

  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    auto& comm = *world.comm();
    check_same_options(comm, desc, vm, "bench attention");
    int rc = 0;
    if (kernel_level) {  // rank 0 alone, with its threads; the others wait
      const auto deadline = comm.timeout();
      // A full kernel sweep takes minutes: the waiting ranks get hours, not the per-operation deadline.
      if (comm.rank() != 0) comm.set_timeout(std::max<std::chrono::milliseconds>(deadline, std::chrono::hours(3)));
      if (comm.rank() == 0) {
        auto result = bench::run_kernel_bench(ko);
        out.block("kernel", kernel_header(ko) + " (rank 0 of " + std::to_string(comm.size()) + ")", result.rows,
                  result.summary);
        rc = kernel_exit_code(result.rows);
      }
      comm.barrier()->wait();
      comm.set_timeout(deadline);
    }
    set_world_size(comm.size());
    co.ranks_per_host = world.local_size();
    auto result = bench::run_cp_bench(comm, co);
    if (comm.rank() != 0) return 0;
    out.block("distributed", distributed_header(co, comm.backend(), comm.size()), result.rows, result.notes);
    return std::max(rc, distributed_exit_code(result.rows));
  });
}

}  // namespace longhaul::cli
