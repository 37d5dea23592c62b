#include "train/degree_schedule.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <sstream>

#include "core/errors.h"
#include "parallel/kernel_rate.h"
#include "runtime/comm/local/communicator.h"
#include "train/linear_cross_entropy.h"
#include "train/model.h"

namespace longhaul::train {
namespace {

// A rate every rank measures at the same time (so a host's ranks compete for its cores as they
// will in training), agreed as the slowest rank's. A failure anywhere fails every rank.
double agreed_rate(const CommPtr& world, const std::function<double()>& measure) {
  std::string error;
  double mine = -1;
  try {
    mine = measure();
  } catch (const std::exception& e) {
    error = e.what();
  }
  at::Tensor t = at::full({1}, mine, at::kDouble);
  world->all_reduce(t, ReduceOp::Min)->wait();
  const double v = t.item<double>();
  if (!(v > 0))
    throw Error("train --cp auto: measuring the planner's rates failed" +
                (error.empty() ? std::string(" on another rank") : ": " + error));
  return v;
}

// The model's own rate outside attention, FLOPs per token as the planner counts them: one
// forward + backward of 2048 tokens (documents of 256) on this rank alone, minus the attention
// time its clock measured, after a warm-up. Unlike a bare GEMM it includes what a step really
// pays per token: norms, RoPE, SwiGLU, the loss, autograd.
double measure_model_dense_gflops(const ModelOptions& m, int64_t loss_chunk_bytes, double flops_per_token) {
  const int64_t T = 2048, doc = 256;
  std::vector<int64_t> cu;
  for (int64_t t = 0; t <= T; t += doc) cu.push_back(t);
  Options co;
  co.layout = Layout::Contiguous;
  ContextParallel cp(local::create_world(1).at(0), co);
  Transformer model(m);
  const Mask mask = masks::causal_document(cu);
  const ShardPlan plan(T, at::tensor(cu, at::kLong), Layout::Contiguous, 1, 0);
  at::Tensor tokens = at::randint(m.vocab, {T}, at::kLong), targets = at::randint(m.vocab, {T}, at::kLong);
  double dense_s = 0;
  for (int i = 0; i < 2; ++i) {  // the first is a warm-up
    AttentionClock clock;
    const auto t0 = std::chrono::steady_clock::now();
    model.loss_sum(model.hidden(tokens, cp, plan, mask, &clock), targets,
                   loss_chunk_rows(m.vocab, master_dtype(m.precision), loss_chunk_bytes))
        .backward();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    clock.settle();
    dense_s = std::max(1e-9, s - clock.forward_s - clock.backward_s);
  }
  return flops_per_token * double(T) / dense_s / 1e9;
}

}  // namespace

BucketProblem bucket_problem(const TrainOptions& o, int world) {
  const ModelOptions& m = o.model;
  BucketProblem bp;
  bp.world = world;
  // A step is micro_batches passes of this many tokens, one after the other: what a rank holds at
  // once, and the pass the degrees are chosen for (the step's time is that many passes').
  bp.tokens_per_step = o.tokens_per_step / std::max(1, o.micro_batches);
  bp.min_log2 = o.buckets.min_log2;
  bp.max_log2 = o.buckets.max_log2;
  bp.H = m.heads, bp.H_kv = m.kv_heads, bp.D = m.head_dim();
  bp.elem_bytes = static_cast<int64_t>(c10::elementSize(compute_dtype(m.precision)));  // what attention moves
  bp.layers = static_cast<int>(m.layers);
  bp.strategy = o.cp_options.strategy;
  bp.layout = o.cp_options.layout;
  bp.kernel_gflops = o.kernel_gflops;
  bp.memory_limit_bytes = o.memory_gib * double(int64_t(1) << 30);
  // Forward + backward = 3 × the forward's 2 FLOPs per weight: q/k/v/o projections, the SwiGLU
  // MLP (three matrices) per layer, and the output head.
  const double per_layer = double(m.dim) * double((m.heads + 2 * m.kv_heads) * m.head_dim()) +
                           double(m.dim) * double(m.dim) + 3.0 * double(m.dim) * double(m.hidden());
  bp.dense_flops_per_token = 6.0 * (per_layer * double(m.layers) + double(m.dim) * double(m.vocab));
  bp.dense_gflops = o.dense_gflops;
  return bp;
}

void DegreeSchedule::check_fixed_degree(int cp, int W) {
  if (cp == TrainOptions::kCpAuto) return;
  LH_CHECK(cp >= 1 && W % cp == 0, "train: --cp ", cp, " does not divide the world of ", W,
           " ranks (use a divisor of ", W, ", or --cp auto)");
}

DegreeSchedule::DegreeSchedule(const CommPtr& world, const TrainOptions& o) : min_log2_(o.buckets.min_log2) {
  const int W = world->size();
  std::vector<int> degrees;
  check_fixed_degree(o.cp, W);
  if (o.cp != TrainOptions::kCpAuto) {
    fixed_ = o.cp;
    degrees.push_back(o.cp);
  } else {
    problem_ = bucket_problem(o, W);
    // The same on every rank (the same options), so every rank throws: nothing hangs.
    LH_CHECK(o.device == "cpu" || (problem_.kernel_gflops > 0 && problem_.dense_gflops > 0), "train --cp auto on --device ",
             o.device, ": give --kernel-gflops and --dense-gflops (the planner's rates are measured on the CPU only)");
    // Measured rates differ between ranks and runs: the slowest rank's are the agreed inputs.
    if (problem_.kernel_gflops <= 0)
      problem_.kernel_gflops = agreed_rate(world, [&] {
        return measure_kernel_gflops(o.model.heads, o.model.kv_heads, o.model.head_dim(), 1024);
      });
    if (problem_.dense_gflops <= 0)
      problem_.dense_gflops =
          agreed_rate(world, [&] { return measure_model_dense_gflops(o.model, o.loss_chunk_bytes, problem_.dense_flops_per_token);
          });
    std::string error;
    try {
      table_ = plan_bucket_degrees(problem_, network_preset(o.network));
    } catch (const InvalidArgument& e) {
      error = e.what();  // thrown on every rank below, after the agreement collective
    }
    // Agreement: the per-bucket degrees (or -1 for an error) must be the same on every rank.
    const int n = o.buckets.count();
    at::Tensor lo = at::full({n}, -1.0, at::kDouble);
    for (size_t i = 0; i < table_.size(); ++i) lo[static_cast<int64_t>(i)] = double(table_[i].degree);
    at::Tensor hi = lo.clone();
    world->all_reduce(lo, ReduceOp::Min)->wait();
    world->all_reduce(hi, ReduceOp::Max)->wait();
    if (!error.empty()) throw InvalidArgument("train --cp auto: " + error);
    for (int i = 0; i < n; ++i) {
      const double a = lo[i].item<double>(), b = hi[i].item<double>();
      if (a != b)
        throw InvalidArgument(detail::str_cat(
            "train --cp auto: ranks disagree on the CP degree of bucket 2^", min_log2_ + i, ": ",
            a < 0 ? std::string("a rank could not plan it") : std::to_string(int(a)), " vs ", int(b),
            " (every rank must be started with the same model, buckets, --tokens-per-step, --memory-gib, "
            "--network and rates)"));
    }
    for (const BucketDegree& b : table_) degree_of_bucket_.push_back(b.degree), degrees.push_back(b.degree);
  }
  std::sort(degrees.begin(), degrees.end());
  degrees.erase(std::unique(degrees.begin(), degrees.end()), degrees.end());
  for (int c : degrees) {  // ascending on every rank: the splits are collectives in the same order
    auto g = std::make_unique<Group>();
    g->degree = c;
    g->groups = W / c;
    g->index = world->rank() / c;
    g->comm = world->split(g->index, world->rank());  // only the CP group: no ring/Ulysses/dp splits
    g->cp = std::make_unique<ContextParallel>(g->comm, o.cp_options);
    groups_[c] = std::move(g);
  }
}

int DegreeSchedule::degree(int64_t length) const {
  if (fixed_ > 0) return fixed_;
  int k = 0;
  while ((int64_t(1) << (k + 1)) <= length) ++k;  // floor(log2 length)
  const int i = std::clamp(k - min_log2_, 0, static_cast<int>(degree_of_bucket_.size()) - 1);
  return degree_of_bucket_[i];
}

std::string DegreeSchedule::describe() const {
  if (fixed_ > 0) return std::to_string(fixed_);
  std::ostringstream os;
  for (size_t i = 0; i < table_.size(); ++i) os << (i ? " " : "") << table_[i].length << ":" << table_[i].degree;
  return os.str();
}

}  // namespace longhaul::train
