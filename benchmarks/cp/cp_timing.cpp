#include "benchmarks/cp/cp_timing.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "benchmarks/common/report.h"

namespace longhaul::bench {
namespace {

const c10::Device kCpu(c10::kCPU);

// Elementwise maximum over the ranks of a few numbers.
std::vector<double> max_over_ranks(Communicator& comm, const std::vector<double>& xs) {
  at::Tensor t = at::tensor(xs, at::kDouble);
  comm.all_reduce(t, ReduceOp::Max)->wait();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

}  // namespace

CpTimes time_cp(ContextParallel& cp, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                const at::Tensor& dout, const ShardPlan& plan, const Mask& mask, const TimingPlan& timing) {
  Communicator& comm = *cp.group();
  std::vector<double> fwd, bwd;  // this rank's timed runs
  int runs = 0;
  CpStats last;
  const PhaseSamples agreed = time_phases(timing, [&] {
    comm.barrier()->wait();
    Stopwatch watch(kCpu);
    cp.stats().reset();
    AttentionOutput f = cp.forward(q, k, v, plan, mask);
    const double t_fwd = watch.lap();
    comm.barrier()->wait();
    watch.lap();  // the barrier is not the backward's
    cp.backward(dout, q, k, v, f.out, f.lse, plan, mask);
    const double t_bwd = watch.lap();
    last = cp.stats();
    if (++runs > timing.warmup) {
      fwd.push_back(t_fwd);
      bwd.push_back(t_bwd);
    }
    return max_over_ranks(comm, {t_fwd, t_bwd});  // the same on every rank: same budget decision
  });
  const auto m = max_over_ranks(comm, {median(fwd), median(bwd), double(last.bytes_sent_fwd),
                                       double(last.bytes_sent_bwd), double(last.peak_tracked_bytes)});
  CpTimes t;
  t.fwd_ms = m[0];
  t.bwd_ms = m[1];
  t.bytes_sent_fwd = static_cast<int64_t>(m[2]);
  t.bytes_sent_bwd = static_cast<int64_t>(m[3]);
  t.peak_tracked_bytes = static_cast<int64_t>(m[4]);
  t.iters = static_cast<int>(agreed.size());
  return t;
}

SingleRankTimes time_single_rank(Communicator& comm, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& dout, const Mask& mask, const TimingPlan& timing) {
  const bool mine = comm.rank() == 0;
  const int saved_threads = at::get_num_threads();
  if (mine && saved_threads != 1) at::set_num_threads(1);
  const BlockView all = BlockView::self(q.size(0));
  const PhaseSamples s = time_phases(timing, [&] {
    at::Tensor times = at::zeros({2}, at::kDouble);
    if (mine) {
      Stopwatch watch(kCpu);
      AttentionOutput f = attention_forward(q, k, v, all, mask);
      times[0] = watch.lap();
      attention_backward(dout, q, k, v, f.out, f.lse, all, mask);
      times[1] = watch.lap();
    }
    comm.broadcast(times, 0)->wait();  // the others wait here, outside any clock
    return std::vector<double>{times[0].item<double>(), times[1].item<double>()};
  });
  if (mine && saved_threads != 1) at::set_num_threads(saved_threads);
  SingleRankTimes t;
  t.fwd_ms = median_of_first_phases(s, 1);
  std::vector<double> bwd;
  for (const auto& run : s) bwd.push_back(run[1]);
  t.bwd_ms = median(bwd);
  t.iters = static_cast<int>(s.size());

  std::vector<double> loaded_fwd, loaded_bwd;
  int runs = 0;
  time_phases(timing, [&] {
    comm.barrier()->wait();
    Stopwatch watch(kCpu);
    AttentionOutput f = attention_forward(q, k, v, all, mask);
    const double t_fwd = watch.lap();
    attention_backward(dout, q, k, v, f.out, f.lse, all, mask);
    const double t_bwd = watch.lap();
    if (++runs > timing.warmup) {
      loaded_fwd.push_back(t_fwd);
      loaded_bwd.push_back(t_bwd);
    }
    return max_over_ranks(comm, {t_fwd, t_bwd});
  });
  const auto m = max_over_ranks(comm, {median(loaded_fwd), median(loaded_bwd)});
  t.loaded_fwd_ms = m[0];
  t.loaded_bwd_ms = m[1];
  return t;
}

}  // namespace longhaul::bench
