#include "benchmarks/cp/cp_bench.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "core/resident_memory.h"
#include "benchmarks/cp/cp_row.h"
#include "parallel/bytes_model.h"
#include "benchmarks/cp/cp_predict.h"
#include "benchmarks/cp/cp_check.h"
#include "benchmarks/cp/cp_timing.h"
#include "parallel/context_parallel.h"
#include "core/errors.h"

namespace longhaul::bench {
namespace {

constexpr int64_t kElemBytes = 4;  // fp32 inputs

// The Ulysses degree of the `hybrid` rows (ring across the P/2 groups).
constexpr int kHybridUlysses = 2;

struct Config {
  std::string target, strategy, layout, mask;
  int64_t t, h, h_kv, d;
  int p;
  auto key() const { return std::tie(strategy, layout, mask, t, h, h_kv, d, p); }
  // What the single-rank baseline depends on: configurations that share it share this.
  using BaselineKey = std::tuple<std::string, int64_t, int64_t, int64_t, int64_t>;
  BaselineKey baseline_key() const { return {mask, t, h, h_kv, d}; }
};

std::vector<Config> expand(const std::vector<CpTarget>& targets, int world) {
  std::vector<Config> out;
  std::set<std::tuple<std::string, std::string, std::string, int64_t, int64_t, int64_t, int64_t, int>> seen;
  for (const auto& tg : targets) {
    LH_CHECK(!tg.strategies.empty() && !tg.layouts.empty() && !tg.masks.empty() && !tg.seq_lens.empty() &&
                 !tg.heads.empty() && !tg.kv_heads.empty() && !tg.head_dims.empty(),
             "bench cp: target ", tg.name, " has an empty list");
    for (const auto& s : tg.strategies)
      for (const auto& l : tg.layouts)
        for (const auto& m : tg.masks)
          for (int64_t t : tg.seq_lens)
            for (int64_t h : tg.heads)
              for (int64_t hkv : tg.kv_heads)
                for (int64_t d : tg.head_dims) {
                  Config c{tg.name, s, l, m, t, h, hkv == 0 ? h : hkv, d, tg.ranks == 0 ? world : tg.ranks};
                  if (seen.insert(c.key()).second) out.push_back(c);
                }
  }
  return out;
}

void validate(const Config& c) {
  strategy_from_string(c.strategy);  // throws for an unknown name
  layout_from_string(c.layout);
  const auto& names = mask_names();
  if (std::find(names.begin(), names.end(), c.mask) == names.end())
    throw InvalidArgument("bench cp: unknown mask '" + c.mask +
                          "', expected full, causal, documents, causal_documents or causal_window");
  LH_CHECK(c.h > 0 && c.h_kv > 0 && c.d > 0 && c.h % c.h_kv == 0, "bench cp: need H, H_kv, D > 0 and H % H_kv == 0, got H=",
           c.h, " H_kv=", c.h_kv, " D=", c.d);
  LH_CHECK(c.t >= c.p, "bench cp: T=", c.t, " is smaller than P=", c.p);
}

std::string describe(const Config& c) {
  return detail::str_cat(c.strategy, "/", c.layout, "/", c.mask, " T=", c.t, " P=", c.p, " H=", c.h, "/", c.h_kv,
                         " D=", c.d);
}

// Ring Self-Attention's score-sized tensors at their peak (backward: S, P, dS) plus the boolean
// causal mask and a temporary: about 4 of [H, Tl, T] float32 per rank.
double rsa_estimate_bytes(const Config& c) {
  const double tl = std::ceil(double(c.t) / c.p);
  return 4.0 * double(c.h) * tl * double(c.t) * kElemBytes;
}

// Some rank's reason not to run (every rank gets the same answer).
std::string skip_reason(Communicator& comm, const Config& c, const CpBenchOptions& o) {
  if (c.p != comm.size())
    return detail::str_cat("needs P=", c.p, " ranks, this run has ", comm.size(), ": run it with `mpirun -np ", c.p,
                           " longhaul bench cp` or `longhaul bench cp --local ", c.p, "`");
  if (c.strategy == "rsa" && c.mask != "full" && c.mask != "causal")
    return "rsa (Ring Self-Attention) supports only the full and causal masks";
  if (c.strategy == "hybrid") {  // Ulysses degree 2, ring across the P/2 groups
    const int64_t hkv = c.h_kv > 0 ? c.h_kv : c.h;
    if (c.p % kHybridUlysses != 0 || c.h % kHybridUlysses != 0 || (hkv % kHybridUlysses != 0 && kHybridUlysses % hkv != 0))
      return detail::str_cat("hybrid (Ulysses degree ", kHybridUlysses, ") needs P and H divisible by it (P=", c.p,
                             ", H=", c.h, ", H_kv=", hkv, ")");
  }
  if (c.strategy == "ulysses") {
    const int64_t hkv = c.h_kv > 0 ? c.h_kv : c.h;
    if (c.h % c.p != 0 || (hkv % c.p != 0 && c.p % hkv != 0))
      return detail::str_cat("ulysses needs H % P == 0 and H_kv % P == 0 or P % H_kv == 0 (H=", c.h, ", H_kv=", hkv,
                             ", P=", c.p, ")");
  }
  if (c.strategy == "rsa") {
    const double need = rsa_estimate_bytes(c) * o.ranks_per_host;
    at::Tensor too_big = at::full({1}, need > o.memory_fraction * available_memory_bytes() ? 1 : 0, at::kLong);
    comm.all_reduce(too_big, ReduceOp::Max)->wait();
    if (too_big.item<int64_t>() != 0)
      return detail::str_cat("rsa's quadratic scores need about ", need / double(1 << 30), " GiB on this machine (",
                             o.ranks_per_host, " ranks × 4·H·(T/P)·T floats), more than ", o.memory_fraction,
                             " of MemAvailable");
  }
  return "";
}


int64_t bytes_of(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// One rank holding everything, counted as a strategy counts itself plus the inputs and outputs:
// q, k, v in and out (fp32), plus the kernel's own results at their larger phase, forward (the
// float32 out accumulator and lse) or backward (float32 dq, dk, dv): what Ring tracks at P = 1.
int64_t single_rank_peak_bytes(const Config& c) {
  const int64_t q = c.t * c.h * c.d * kElemBytes, kv = c.t * c.h_kv * c.d * kElemBytes, lse = c.h * c.t * 4;
  const int64_t io = 2 * q + 2 * kv;
  return io + std::max(q + lse, q + 2 * kv);
}

Row run_one(Communicator& comm, const Config& c, const CpBenchOptions& o,
            std::map<Config::BaselineKey, SingleRankTimes>& baselines) {
  const Strategy strategy = strategy_from_string(c.strategy);
  const Layout layout = layout_from_string(c.layout);
  const Mask mask = make_mask(c.mask, c.t, o.masks);
  const ShardPlan plan = ShardPlan::for_mask(c.t, mask, layout, comm.size(), comm.rank());

  // The same global inputs on every rank, then this rank's shards.
  auto gen = at::detail::createCPUGenerator(o.seed);
  auto normal = [&](int64_t heads) { return at::randn({c.t, heads, c.d}, gen, at::TensorOptions(at::kFloat)); };
  at::Tensor q = normal(c.h), k = normal(c.h_kv), v = normal(c.h_kv), dout = normal(c.h);

  const auto base_key = c.baseline_key();
  auto found = baselines.find(base_key);
  if (o.baseline && found == baselines.end()) {
    found = baselines.emplace(base_key, time_single_rank(comm, q, k, v, dout, mask, o.timing)).first;
  }

  const at::Tensor ql = plan.shard(q), kl = plan.shard(k), vl = plan.shard(v), dl = plan.shard(dout);
  q = k = v = dout = at::Tensor();
  Options opts;
  opts.strategy = strategy;
  opts.layout = layout;
  opts.ulysses_degree = strategy == Strategy::Hybrid ? kHybridUlysses : 1;
  ContextParallel cp(comm.shared_from_this(), opts);
  const CpTimes t = time_cp(cp, ql, kl, vl, dl, plan, mask, o.timing);
  at::Tensor io = at::full({1}, bytes_of(ql) + bytes_of(kl) + bytes_of(vl) + bytes_of(ql), at::kLong);
  comm.all_reduce(io, ReduceOp::Max)->wait();  // q, k, v in; out
  const int64_t peak = t.peak_tracked_bytes + io.item<int64_t>();

  const int64_t formula = max_forward_bytes_formula(strategy, plan, mask, c.h, c.h_kv, c.d, kElemBytes, opts.ulysses_degree);
  const int64_t wrong = o.check ? check_cp_against_reference(
                                      comm,
                                      CpCheckCase{strategy, layout, c.mask, c.t, std::min(c.t, o.check_t), c.h, c.h_kv,
                                                  c.d, at::kFloat, o.seed + 1},
                                      o.masks)
                                : -1;

  const int64_t area = mask.area(0, c.t, 0, c.t);
  const double f_fwd = 4.0 * double(area) * double(c.h) * double(c.d);
  const double total_ms = t.fwd_ms + t.bwd_ms;
  const double gflops = 3.5 * f_fwd / c.p / (total_ms * 1e-3) / 1e9;
  double single_ms = NAN, efficiency = NAN;
  const int64_t single_peak = single_rank_peak_bytes(c);
  std::string note;
  CpPredictions predicted{NAN, NAN};
  if (o.baseline) {
    single_ms = found->second.fwd_ms + found->second.bwd_ms;
    efficiency = single_ms / (c.p * total_ms);
    // Both predictions run on rank 0 only (the simulator is P threads of this process).
    if (comm.rank() == 0 && o.predict) {
      CpPredictionInput in;
      in.strategy = strategy, in.layout = layout, in.ulysses_degree = opts.ulysses_degree;
      in.mask_name = c.mask, in.mask = mask;
      in.T = c.t, in.H = c.h, in.H_kv = c.h_kv, in.D = c.d, in.P = c.p, in.elem_bytes = kElemBytes;
      in.single_fwd_ms = found->second.fwd_ms, in.single_bwd_ms = found->second.bwd_ms;
      in.loaded_fwd_ms = found->second.loaded_fwd_ms, in.loaded_bwd_ms = found->second.loaded_bwd_ms;
      predicted = predict_cp_row(in);
    }
  } else {
    note = "no baseline (--no-baseline)";
  }
  // LongCA-bench's communication metric: bytes a rank sends over the K,V bytes it holds.
  const double local_kv_bytes = std::ceil(double(c.t) / c.p) * 2.0 * double(c.h_kv) * double(c.d) * kElemBytes;
  return cp_config_row(c.strategy, c.layout, c.mask, c.t, c.p, c.h, c.h_kv, c.d)
      .add("fwd_ms", t.fwd_ms)
      .add("bwd_ms", t.bwd_ms)
      .add("fwd_tflops_per_rank", f_fwd / c.p / (t.fwd_ms * 1e-3) / 1e12)
      .add("bwd_tflops_per_rank", 2.5 * f_fwd / c.p / (t.bwd_ms * 1e-3) / 1e12)
      .add("gflops_per_rank", gflops)
      .add("efficiency", efficiency)
      .add("imbalance", plan.area_imbalance(mask))
      .add("comm_ratio", double(t.bytes_sent_fwd) / local_kv_bytes)
      .add("bytes_sent", t.bytes_sent_fwd)
      .add("bytes_formula", formula)
      .add("bytes_sent_bwd", t.bytes_sent_bwd)
      .add("peak_tensor_bytes", peak)
      .add("predicted_ms", predicted.planner_ms)
      .add("predicted_over_measured", predicted.planner_ms / total_ms)
      .add("simulated_ms", predicted.simulated_ms)
      .add("simulated_over_measured", predicted.simulated_ms / total_ms)
      .add("single_rank_ms", single_ms)
      .add("single_rank_peak_bytes", single_peak)
      .add("peak_ratio", double(peak) / double(single_peak))
      .add("threads", int64_t(at::get_num_threads()))
      .add("iters", int64_t(t.iters))
      .add("wrong", wrong)
      .add("note", note.empty() ? std::string("-") : note);
}

}  // namespace

CpBenchOptions default_cp_options() {
  CpBenchOptions o;
  o.masks.doc_min = 256;
  o.masks.doc_max = 8192;
  o.timing.iters = 3;
  // (a) P = world size, causal T=16384: ring in every layout, allgather and rsa zigzag to compare.
  o.targets.push_back({"a", {"ring"}, {"zigzag", "contiguous", "striped"}, {"causal"}, {16384}, {4}, {0}, {64}, 0});
  o.targets.push_back({"a", {"allgather", "tokenring", "ulysses", "hybrid", "rsa"}, {"zigzag"}, {"causal"}, {16384}, {4}, {0},
                       {64}, 0});
  // (b) documents of 256–8192 tokens.
  o.targets.push_back({"b", {"ring"}, {"zigzag"}, {"causal_documents"}, {16384}, {4}, {0}, {64}, 0});
  // (c) memory per rank: ring at P=4, T=32768; rsa's quadratic growth at smaller T.
  o.targets.push_back({"c", {"ring"}, {"zigzag"}, {"causal"}, {32768}, {4}, {0}, {64}, 4});
  o.targets.push_back({"c", {"rsa"}, {"zigzag"}, {"causal"}, {2048, 4096, 8192}, {4}, {0}, {64}, 4});
  return o;
}

CpBenchOptions quick_cp_options() {
  CpBenchOptions o;
  o.masks.doc_min = 64;
  o.masks.doc_max = 256;
  o.masks.window_left = 128;
  o.timing.iters = 2;
  o.timing.warmup = 1;
  o.check_t = 256;
  o.targets.push_back({"quick", {"ring", "allgather", "rsa", "tokenring", "ulysses", "hybrid"}, {"contiguous", "zigzag", "striped"}, mask_names(), {512},
                       {4}, {2}, {32}, 0});
  o.targets.push_back({"quick", {"ring"}, {"zigzag"}, {"causal", "causal_documents"}, {1024}, {4}, {0}, {64}, 0});
  return o;
}

void override_targets(std::vector<CpTarget>& targets, const CpTarget& given) {
  for (auto& t : targets) {
    if (!given.strategies.empty()) t.strategies = given.strategies;
    if (!given.layouts.empty()) t.layouts = given.layouts;
    if (!given.masks.empty()) t.masks = given.masks;
    if (!given.seq_lens.empty()) t.seq_lens = given.seq_lens;
    if (!given.heads.empty()) t.heads = given.heads;
    if (!given.kv_heads.empty()) t.kv_heads = given.kv_heads;
    if (!given.head_dims.empty()) t.head_dims = given.head_dims;
    if (given.ranks != 0) t.ranks = given.ranks;
  }
}

CpBenchResult run_cp_bench(Communicator& comm, const CpBenchOptions& o) {
  LH_CHECK(o.check_t > 0, "bench cp: --check-t must be positive, got ", o.check_t);
  auto configs = expand(o.targets, comm.size());
  for (const auto& c : configs) validate(c);
  // The configurations of one baseline (mask and shape) run together, right after it: on a
  // machine whose speed drifts over minutes, a baseline measured long before its rows would make
  // the later strategies look slower than the first.
  std::map<Config::BaselineKey, size_t> first_seen;
  for (const auto& c : configs) first_seen.emplace(c.baseline_key(), first_seen.size());
  std::stable_sort(configs.begin(), configs.end(), [&](const Config& a, const Config& b) {
    return first_seen.at(a.baseline_key()) < first_seen.at(b.baseline_key());
  });
  make_mask("documents", 1, o.masks);  // checks the document and window options before any run
  make_mask("causal_window", 1, o.masks);

  CpBenchResult result;
  std::map<Config::BaselineKey, SingleRankTimes> baselines;
  for (size_t i = 0; i < configs.size(); ++i) {
    const Config& c = configs[i];
    if (o.progress && comm.rank() == 0) o.progress(i + 1, configs.size(), describe(c));
    const std::string why = skip_reason(comm, c, o);
    if (!why.empty()) {
      result.notes.push_back("# (" + c.target + ") skipped " + describe(c) + ": " + why);
      continue;
    }
    result.rows.push_back(run_one(comm, c, o, baselines));
  }
  return result;
}

std::vector<std::string> cp_failures(const std::vector<Row>& rows) {
  std::vector<std::string> out;
  auto get = [](const Row& r, const char* key) {
    const Value* v = r.find(key);
    return v && std::holds_alternative<int64_t>(*v) ? std::get<int64_t>(*v) : int64_t(0);
  };
  auto text = [](const Row& r, const char* key) {
    const Value* v = r.find(key);
    return v && std::holds_alternative<std::string>(*v) ? std::get<std::string>(*v) : std::string("?");
  };
  for (const auto& r : rows) {
    const std::string what = detail::str_cat(text(r, "strategy"), "/", text(r, "layout"), "/", text(r, "mask"),
                                             " T=", get(r, "T"), " P=", get(r, "P"), " H=", get(r, "H"), "/",
                                             get(r, "H_kv"), " D=", get(r, "D"));
    if (get(r, "wrong") > 0) out.push_back(what + ": " + std::to_string(get(r, "wrong")) + " wrong elements");
    if (get(r, "bytes_sent") != get(r, "bytes_formula"))
      out.push_back(detail::str_cat(what, ": bytes_sent ", get(r, "bytes_sent"), " != bytes_formula ",
                                    get(r, "bytes_formula")));
  }
  return out;
}

}  // namespace longhaul::bench
