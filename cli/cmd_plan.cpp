// `longhaul plan`: the cost model's prediction per strategy and layout for a problem and a
// network, and the pick.
#include <ATen/ATen.h>

#include <cstdio>
#include <cmath>
#include <iostream>

#include "core/resident_memory.h"
#include "core/report.h"
#include "cli/cli.h"
#include "data/length_mix.h"
#include "parallel/bucket_planner.h"
#include "parallel/kernel_rate.h"
#include "parallel/planner.h"
#include "core/errors.h"

namespace longhaul::cli {
namespace {

constexpr int kMostRanks = 1024;  // as `simulate`: beyond, the per-pair model takes many minutes
constexpr int64_t kMostTokens = int64_t(1) << 31;  // a mask's areas stay exact in int64 up to here

// Time per million tokens of a schedule over a length mix's DD buckets: Σ_i share_i · t_i(c_i) / B.
// One row for --cp auto (each bucket's pick) and one per fixed degree, with auto's gain over it.
void print_schedule_comparison(const std::vector<BucketDegree>& table, const BucketProblem& bp,
                               const std::string& mix, bool json) {
  const data::BucketRange range{bp.min_log2, bp.max_log2};
  const std::vector<double> share =
      data::bucket_token_shares(data::document_length_mix(mix, int64_t(1) << 30), range);
  auto per_mtoken = [&](auto degree_of) {
    double s = 0;
    for (size_t i = 0; i < table.size(); ++i) {
      const DegreeOption* o = nullptr;
      for (const DegreeOption& x : table[i].options)
        if (x.degree == degree_of(table[i])) o = &x;
      if (o == nullptr || !o->feasible) return -1.0;
      s += share[i] * o->step_s / double(bp.tokens_per_step);
    }
    return s * 1e6;
  };
  const double automatic = per_mtoken([](const BucketDegree& b) { return b.degree; });
  std::vector<report::Row> rows;
  std::string shares;
  for (size_t i = 0; i < table.size(); ++i) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s%lld:%.1f%%", i ? " " : "", static_cast<long long>(table[i].length), 100 * share[i]);
    shares += buf;
  }
  auto row = [&](const std::string& cp, double t) {
    rows.push_back(report::Row()
                       .add("mix", mix)
                       .add("world", int64_t(bp.world))
                       .add("cp", cp)
                       .add("s_per_mtoken", t)
                       .add("auto_speedup", t > 0 && automatic > 0 ? t / automatic : 0.0)
                       .add("note", std::string(t < 0 ? "a bucket does not fit this degree" : "-")));
  };
  std::string picks;
  for (const BucketDegree& b : table) {
    if (!picks.empty()) picks += ' ';
    picks += std::to_string(b.length) + ":" + std::to_string(b.degree);
  }
  row("auto (" + picks + ")", automatic);
  for (const DegreeOption& o : table.front().options)
    row(std::to_string(o.degree), per_mtoken([&](const BucketDegree&) { return o.degree; }));
  if (!json)
    std::cout << "\n# --cp auto vs fixed degrees over the DD buckets of " << mix
              << " (token share per bucket " << shares << "; longca_long: 60% documents of 8K..30K, 40% "
              << "log-uniform 128..8K): predicted seconds per million tokens, the busiest rank's step\n";
  report::print_rows(std::cout, rows, json);
}

// The memory a rank may use when --memory-gib is not given: a GPU preset's device memory, or this
// machine's available memory shared by the P ranks it runs.
double default_memory_per_rank(const Network& net, int ranks) {
  if (net.device_memory_bytes > 0) return net.device_memory_bytes;
  const double available = available_memory_bytes();
  return std::isfinite(available) ? available / std::max(1, ranks) : 0;  // unknown: no limit
}

}  // namespace

int cmd_plan(const std::vector<std::string>& args) {
  Problem pr;
  std::string network = "this-machine", dtype = "fp32";
  double alpha = 0, beta = 0, memory_gib = -1, fwd_setup_tiles = -1, bwd_setup_tiles = -1;
  int64_t doc_len = 0;
  bool json = false, buckets = false;
  std::string histogram;
  BucketProblem bp;
  std::string strategy = "ring", layout = "zigzag";
  po::options_description desc("longhaul plan");
  desc.add_options()
      ("tokens", po::value(&pr.T)->default_value(1 << 20), "tokens of the sequence")
      ("heads", po::value(&pr.H)->default_value(32), "query heads")
      ("kv-heads", po::value(&pr.H_kv)->default_value(8), "key/value heads")
      ("head-dim", po::value(&pr.D)->default_value(128), "head dim")
      ("ranks", po::value(&pr.P)->default_value(8), "ranks of the CP group (1 to 1024, at most --tokens)")
      ("mask", po::value(&pr.mask)->default_value("causal"),
       "full, causal, documents, causal_documents, causal_window, or a family (share_question, "
       "block_causal_document, ...; --window is its parameter, --doc-len its documents)")
      ("doc-len", po::value(&doc_len)->default_value(0), "document length for the document masks")
      ("window", po::value(&pr.window)->default_value(4096), "left extent of causal_window")
      ("dtype", po::value(&dtype)->default_value("bf16"), "fp32, bf16, fp16 or fp64 (element size of transfers)")
      ("network", po::value(&network)->default_value(network), "this-machine, nvlink, infiniband or pcie")
      ("alpha", po::value(&alpha)->default_value(0), "latency per message, seconds (overrides the preset)")
      ("beta", po::value(&beta)->default_value(0), "bandwidth per link direction, bytes/s (overrides the preset)")
      ("gflops", po::value(&pr.kernel_gflops)->default_value(0), "kernel GFLOP/s per rank (0: measure here)")
      ("dense-gflops", po::value(&pr.dense_gflops)->default_value(0),
       "matrix product GFLOP/s per rank, for rsa's dense scores (0: measure here when --gflops is, else --gflops)")
      ("memory-gbps", po::value(&pr.memory_gbps)->default_value(0),
       "memory traffic GB/s per rank (bytes read + written), for rsa's passes and every strategy's merges (0: the preset's device; this-machine: measure here)")
      ("fwd-setup-tiles", po::value(&fwd_setup_tiles)->default_value(-1),
       "a GPU kernel's start-up per working query tile, forward, in tiles' time (<0: the network preset's, 4 on the GPU presets, 0 this-machine)")
      ("bwd-setup-tiles", po::value(&bwd_setup_tiles)->default_value(-1),
       "the same per working key tile, backward (<0: the preset's, 1.5 on the GPU presets)")
      ("first-touch-gbps", po::value(&pr.first_touch_gbps)->default_value(0),
       "GB/s at which rsa's fresh score matrices are first touched (0: free on a GPU preset; this-machine: "
       "measure here)")
      ("memory-gib", po::value(&memory_gib)->default_value(-1),
       "memory per rank (-1: the preset's device memory, 80 GiB for nvlink/infiniband, 48 pcie; this-machine: "
       "MemAvailable, or less under a memory cgroup's limit, shared by the ranks; 0: no limit)")
      ("buckets", po::bool_switch(&buckets),
       "the CP degree of each DD bucket (2^min-log2 .. 2^max-log2) for a world of --ranks ranks instead")
      ("tokens-per-step", po::value(&bp.tokens_per_step)->default_value(65536), "--buckets: tokens per step over the world")
      ("min-log2", po::value(&bp.min_log2)->default_value(bp.min_log2), "--buckets: shortest bucket 2^m")
      ("max-log2", po::value(&bp.max_log2)->default_value(16), "--buckets: longest bucket 2^M")
      ("layers", po::value(&bp.layers)->default_value(1), "--buckets: attention layers per step")
      ("strategy", po::value(&strategy)->default_value(strategy), "--buckets: the strategy inside a CP group")
      ("layout", po::value(&layout)->default_value(layout), "--buckets: the layout inside a CP group")
      ("histogram", po::value(&histogram),
       "--buckets: also compare --cp auto with every fixed degree over the DD buckets of a document-length mix "
       "(longca_long, longca_short)")
      ("json", po::bool_switch(&json), "JSON lines instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "longhaul plan [options]")) return 0;
  LH_CHECK(pr.T >= 1 && pr.T <= kMostTokens, "plan: --tokens ", pr.T, ": expected 1 to 2^31");
  check_head_counts(vm, "plan", pr.H, pr.H_kv, pr.D);
  // Each strategy's traffic is modelled per rank pair: the cost grows with P^2.
  LH_CHECK(pr.P >= 1 && pr.P <= kMostRanks && (buckets || pr.P <= pr.T), "plan: --ranks ", pr.P, ": expected 1 to ",
           kMostRanks, buckets ? "" : " and at most --tokens (" + std::to_string(pr.T) + ")");
  pr.elem_bytes = dtype == "fp64" ? 8 : dtype == "fp32" ? 4 : 2;
  LH_CHECK(dtype == "fp64" || dtype == "fp32" || dtype == "bf16" || dtype == "fp16", "unknown dtype '", dtype, "'");
  if (pr.mask == "documents" || pr.mask == "causal_documents" || (doc_len > 0 && pr.mask != "full" && pr.mask != "causal")) {
    LH_CHECK(doc_len > 0, "mask ", pr.mask, " needs --doc-len");
    for (int64_t t = 0; t < pr.T; t += doc_len) pr.cu_seqlens.push_back(t);
    pr.cu_seqlens.push_back(pr.T);
  }
  Network net = network_preset(network);
  if (alpha > 0) net.alpha_s = alpha;
  if (fwd_setup_tiles >= 0) net.setup_tiles_fwd = fwd_setup_tiles;
  if (bwd_setup_tiles >= 0) net.setup_tiles_bwd = bwd_setup_tiles;
  if (beta > 0) net.beta_Bps = net.intra_beta_Bps = beta;
  pr.memory_limit_bytes = memory_gib >= 0 ? memory_gib * double(1 << 30) : default_memory_per_rank(net, pr.P);
  if (pr.kernel_gflops <= 0) {
    pr.kernel_gflops = measure_kernel_gflops(std::max<int64_t>(1, pr.H / pr.P), std::max<int64_t>(1, pr.H_kv / pr.P), pr.D);
    if (pr.dense_gflops <= 0) pr.dense_gflops = measure_dense_gflops(1024, pr.D, 1024);
  }
  if (pr.memory_gbps <= 0 && net.device_memory_Bps <= 0) pr.memory_gbps = measure_memory_gbps();
  if (pr.first_touch_gbps <= 0 && net.device_memory_Bps <= 0) pr.first_touch_gbps = measure_first_touch_gbps();
  if (buckets) {
    bp.world = pr.P;
    bp.H = pr.H, bp.H_kv = pr.H_kv, bp.D = pr.D, bp.elem_bytes = pr.elem_bytes;
    bp.strategy = strategy_from_string(strategy);
    bp.layout = layout_from_string(layout);
    bp.kernel_gflops = pr.kernel_gflops;
    bp.memory_limit_bytes = pr.memory_limit_bytes;
    std::vector<report::Row> rows;
    const std::vector<BucketDegree> table = plan_bucket_degrees(bp, net);
    for (const BucketDegree& b : table)
      for (const DegreeOption& o : b.options)
        rows.push_back(report::Row()
                           .add("bucket", b.length)
                           .add("sequences", b.sequences)
                           .add("degree", int64_t(o.degree))
                           .add("groups", int64_t(pr.P / o.degree))
                           .add("seqs_per_group", o.sequences_per_group)
                           .add("predicted_ms", o.attention_s * 1e3)
                           .add("compute_ms", o.compute_s * 1e3)
                           .add("exposed_comm_ms", o.comm_s * 1e3)
                           .add("memory_mib", double(o.memory_bytes) / (1 << 20))
                           .add("feasible", int64_t(o.feasible))
                           .add("pick", std::string(o.degree == b.degree ? "*" : ""))
                           .add("note", o.note.empty() ? std::string("-") : o.note));
    if (!json)
      std::cout << "# plan --buckets: world " << bp.world << ", " << bp.tokens_per_step << " tokens per step, H="
                << bp.H << "/" << bp.H_kv << " D=" << bp.D << ", " << strategy << "/" << layout << " inside a group, "
                << bp.layers << " attention layer(s), network " << net.name << ", kernel " << bp.kernel_gflops
                << " GFLOP/s per rank; predicted_ms: the step's attention (fwd+bwd) on the busiest rank\n";
    report::print_rows(std::cout, rows, json);
    if (!histogram.empty()) print_schedule_comparison(table, bp, histogram, json);
    return 0;
  }
  auto preds = plan_strategies(pr, net);
  std::vector<report::Row> rows;
  bool picked = false;
  for (const auto& p : preds) {
    const bool pick = p.feasible && !picked;
    picked = picked || pick;
    rows.push_back(report::Row()
                       .add("strategy", std::string(to_string(p.strategy)))
                       .add("layout", std::string(to_string(p.layout)))
                       .add("ulysses", int64_t(p.ulysses_degree))
                       .add("inner", std::string(p.strategy == Strategy::Hybrid ? to_string(p.inner) : "-"))
                       .add("predicted_ms", p.time_s * 1e3)
                       .add("compute_ms", p.compute_s * 1e3)
                       .add("exposed_comm_ms", p.comm_s * 1e3)
                       .add("bytes_fwd", p.bytes_fwd)
                       .add("memory_mib", double(p.memory_bytes) / (1 << 20))
                       .add("feasible", int64_t(p.feasible))
                       .add("pick", std::string(pick ? "*" : ""))
                       .add("note", p.note.empty() ? std::string("-") : p.note));
  }
  if (!json)
    std::cout << "# plan: T=" << pr.T << " H=" << pr.H << "/" << pr.H_kv << " D=" << pr.D << " P=" << pr.P << " "
              << pr.mask << " " << dtype << ", network " << net.name << " (alpha " << net.alpha_s * 1e6 << " us, beta "
              << net.beta_Bps / 1e9 << " GB/s, " << (net.full_duplex ? "full" : "half") << " duplex), kernel "
              << pr.kernel_gflops << " GFLOP/s per rank, memory limit "
              << (pr.memory_limit_bytes > 0 ? std::to_string(int64_t(pr.memory_limit_bytes / double(1 << 30))) + " GiB"
                                            : std::string("none"))
              << " per rank; forward+backward of one attention layer\n";
  report::print_rows(std::cout, rows, json);
  return 0;
}

}  // namespace longhaul::cli
