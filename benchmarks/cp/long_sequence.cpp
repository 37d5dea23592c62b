#include "benchmarks/cp/long_sequence.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>

#include "parallel/bytes_model.h"
#include "parallel/context_parallel.h"
#include "runtime/errors.h"

namespace longhaul::bench {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Globals {
  at::Tensor q, k, v, dout;
};
// The same global tensors on every rank (a private generator: deterministic, thread-safe).
Globals make_globals(const LongSequenceOptions& o) {
  at::Generator gen = at::detail::createCPUGenerator(2024);
  return {at::randn({o.T, o.H, o.D}, gen, at::kFloat), at::randn({o.T, o.H_kv, o.D}, gen, at::kFloat),
          at::randn({o.T, o.H_kv, o.D}, gen, at::kFloat), at::randn({o.T, o.H, o.D}, gen, at::kFloat)};
}
double max_rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1.0, b.abs().max().item<double>());
}
}  // namespace

Row run_long_sequence(Communicator& comm, const LongSequenceOptions& o) {
  const int p = comm.size(), r = comm.rank();
  const Strategy strategy = strategy_from_string(o.strategy);
  const Layout layout = layout_from_string(o.layout);
  const Mask mask = o.window > 0 ? Mask::causal().window(o.window, 0) : Mask::causal();
  ShardPlan plan(o.T, std::nullopt, layout, p, r);
  at::Tensor q, k, v, dout;
  {
    Globals g = make_globals(o);  // freed at the end of this scope: each rank keeps its shard
    q = plan.shard(g.q), k = plan.shard(g.k), v = plan.shard(g.v), dout = plan.shard(g.dout);
  }
  ContextParallel cp(comm.shared_from_this(), {.strategy = strategy, .layout = layout});
  comm.barrier()->wait();
  cp.stats().reset();
  auto t0 = Clock::now();
  AttentionOutput f = cp.forward(q, k, v, plan, mask);
  const double fwd_s = seconds_since(t0);
  comm.barrier()->wait();
  t0 = Clock::now();
  AttentionGrads g = cp.backward(dout, q, k, v, f.out, f.lse, plan, mask);
  const double bwd_s = seconds_since(t0);
  comm.barrier()->wait();

  auto max_over = [&](double x) {
    at::Tensor t = at::full({1}, x, at::kDouble);
    comm.all_reduce(t, ReduceOp::Max)->wait();
    return t.item<double>();
  };
  const double fwd = max_over(fwd_s), bwd = max_over(bwd_s);
  const double sent = max_over(double(cp.stats().bytes_sent_fwd));
  const double peak = max_over(double(cp.stats().peak_tracked_bytes));
  const int64_t formula = max_forward_bytes_formula(strategy, plan, mask, o.H, o.H_kv, o.D, 4);
  const int64_t full_block = (o.T + p - 1) / p * 2 * o.H_kv * o.D * 4 * (p - 1);

  // Gather everything to rank 0 and compare with one process computing the whole sequence.
  double err = NAN, single_s = NAN;
  if (o.check) {
    at::Tensor out_all = plan.unshard(f.out, comm), dq_all = plan.unshard(g.dq, comm);
    at::Tensor dk_all = plan.unshard(g.dk, comm), dv_all = plan.unshard(g.dv, comm);
    at::Tensor lse_all = plan.unshard(f.lse.transpose(0, 1).contiguous(), comm).transpose(0, 1);
    if (r == 0) {
      Globals gl = make_globals(o);
      const auto view = BlockView::self(o.T);
      t0 = Clock::now();
      AttentionOutput ref = attention_forward(gl.q, gl.k, gl.v, view, mask);
      AttentionGrads rg = attention_backward(gl.dout, gl.q, gl.k, gl.v, ref.out, ref.lse, view, mask);
      single_s = seconds_since(t0);
      err = std::max({max_rel(out_all, ref.out), max_rel(lse_all, ref.lse), max_rel(dq_all, rg.dq),
                      max_rel(dk_all, rg.dk), max_rel(dv_all, rg.dv)});
    }
    comm.barrier()->wait();
  }
  const int64_t wrong = r == 0 && !(err <= o.tolerance) ? 1 : 0;
  return Row()
      .add("strategy", o.strategy)
      .add("layout", o.layout)
      .add("mask", std::string(o.window > 0 ? "causal_window" : "causal"))
      .add("window", o.window)
      .add("T", o.T)
      .add("P", int64_t(p))
      .add("H", o.H)
      .add("H_kv", o.H_kv)
      .add("D", o.D)
      .add("fwd_ms", fwd * 1e3)
      .add("bwd_ms", bwd * 1e3)
      .add("bytes_sent", int64_t(sent))
      .add("bytes_formula", formula)
      .add("bytes_whole_blocks", full_block)
      .add("peak_tensor_bytes", int64_t(peak))
      .add("single_process_ms", single_s * 1e3)
      .add("max_rel_err", err)
      .add("tolerance", o.tolerance)
      .add("wrong", wrong);
}

}  // namespace longhaul::bench
