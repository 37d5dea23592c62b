// `longhaul bench <what>`: the benchmarks. Today: comm.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <iostream>
#include <mutex>

#include "benchmarks/comm/comm_bench.h"
#include "launch/cli.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/errors.h"

namespace longhaul::cli {
namespace {

// Prints rows (table or JSON) and returns the exit code: non-zero when any row has wrong > 0.
int report(const std::vector<bench::Row>& rows, bool json, const std::string& header) {
  if (!json) std::cout << header << "\n";
  bench::print_rows(std::cout, rows, json);
  int64_t wrong = 0;
  for (const auto& r : rows)
    if (auto* w = r.find("wrong")) wrong += std::get<int64_t>(*w);
  if (wrong > 0) std::cerr << "longhaul bench: " << wrong << " wrong elements received\n";
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
    run_local_ranks(local, [&](Communicator& comm) {
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

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
  const std::string usage = "longhaul bench <comm> [options]   (longhaul bench comm --help)";
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: " << usage << "\n";
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "comm") return bench_comm(rest);
  throw InvalidArgument("unknown benchmark '" + args[0] + "', expected: comm");
}

}  // namespace longhaul::cli
