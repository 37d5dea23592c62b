#include "benchmarks/cp/long_sequence.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <thread>

#include "benchmarks/cp/cp_row.h"
#include "parallel/bytes_model.h"
#include "parallel/context_parallel.h"
#include "core/errors.h"
#include "core/worst_error.h"

namespace longhaul::bench {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The global tensors, deterministic and generated in chunks of rows (a private generator per
// chunk), so a rank can build just its own rows and rank 0 the whole sequence.
constexpr int64_t kChunk = 4096;
at::Tensor global_rows(const at::Tensor& positions, int64_t heads, int64_t d, uint64_t salt) {
  at::Tensor out = at::empty({positions.numel(), heads, d}, at::kFloat);
  const int64_t* pos = positions.data_ptr<int64_t>();
  int64_t i = 0;
  while (i < positions.numel()) {
    const int64_t chunk = pos[i] / kChunk;
    int64_t j = i;
    while (j < positions.numel() && pos[j] / kChunk == chunk) ++j;
    at::Generator gen = at::detail::createCPUGenerator(salt * 1000003 + chunk);
    at::Tensor block = at::randn({kChunk, heads, d}, gen, at::kFloat);
    at::Tensor local = at::arange(i, j, at::kLong), in_chunk = positions.slice(0, i, j) - chunk * kChunk;
    out.index_copy_(0, local, block.index_select(0, in_chunk));
    i = j;
  }
  return out;
}
struct Globals {
  at::Tensor q, k, v, dout;
};
Globals make_globals(const LongSequenceOptions& o, const at::Tensor& positions) {
  return {global_rows(positions, o.H, o.D, 1), global_rows(positions, o.H_kv, o.D, 2),
          global_rows(positions, o.H_kv, o.D, 3), global_rows(positions, o.H, o.D, 4)};
}
int affinity_threads() { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }
double max_rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1.0, b.abs().max().item<double>());
}
}  // namespace

Row run_long_sequence(Communicator& comm, const LongSequenceOptions& o) {
  const int p = comm.size(), r = comm.rank();
  const Strategy strategy = strategy_from_string(o.strategy);
  const Layout layout = layout_from_string(o.layout);
  const Mask mask = o.window > 0 ? Mask::causal().window(o.window, 0) : Mask::causal();
  const ShardPlan plan = ShardPlan::for_mask(o.T, mask, layout, p, r);
  Globals mine = make_globals(o, plan.positions());  // only this rank's rows
  at::Tensor q = mine.q, k = mine.k, v = mine.v, dout = mine.dout;
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

  // Rank 0 compares with one process computing the whole sequence, one result at a time to keep
  // its memory bounded; the other ranks wait in the next gather.
  double err = NAN, single_s = NAN;
  std::vector<at::Tensor> ref_grads(3);
  if (o.check) {
    const int threads = at::get_num_threads();
    Globals gl;
    AttentionOutput ref;
    at::Tensor out_all = plan.unshard(f.out, comm);
    at::Tensor lse_all = plan.unshard(f.lse.transpose(0, 1).contiguous(), comm).transpose(0, 1);
    const auto view = BlockView::self(o.T);
    if (r == 0) {
      at::set_num_threads(affinity_threads());
      gl = make_globals(o, at::arange(o.T, at::kLong));
      t0 = Clock::now();
      ref = attention_forward(gl.q, gl.k, gl.v, view, mask);
      single_s = seconds_since(t0);
      err = worst_error(max_rel(out_all, ref.out), max_rel(lse_all, ref.lse));
    }
    out_all = lse_all = at::Tensor();
    for (int which = 0; which < 3; ++which) {
      const at::Tensor& mine_g = which == 0 ? g.dq : which == 1 ? g.dk : g.dv;
      at::Tensor all = plan.unshard(mine_g, comm);
      if (r == 0) {
        if (which == 0) {
          t0 = Clock::now();
          AttentionGrads rg = attention_backward(gl.dout, gl.q, gl.k, gl.v, ref.out, ref.lse, view, mask);
          single_s += seconds_since(t0);
          ref_grads = {rg.dq, rg.dk, rg.dv};
        }
        err = worst_error(err, max_rel(all, ref_grads[which]));
        ref_grads[which] = at::Tensor();
      }
    }
    if (r == 0) at::set_num_threads(threads);
    comm.barrier()->wait();
  }
  const int64_t wrong = r == 0 && !(err <= o.tolerance) ? 1 : 0;
  return cp_config_row(o.strategy, o.layout, o.window > 0 ? "causal_window" : "causal", o.T, p, o.H, o.H_kv, o.D)
      .add("window", o.window)
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
