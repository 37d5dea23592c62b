#include "parallel/simulate.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>

#include "core/errors.h"
#include "parallel/context_parallel.h"
#include "parallel/shard_plan.h"
#include "runtime/comm/nccl_order/communicator.h"

namespace longhaul {

double Simulation::forward_tflops_per_rank() const {
  const double flops = 4.0 * static_cast<double>(area) * H * D;
  return forward_s > 0 ? flops / forward_s / static_cast<double>(ranks.size()) / 1e12 : 0.0;
}

double Simulation::backward_tflops_per_rank() const {
  const double flops = 2.5 * 4.0 * static_cast<double>(area) * H * D;
  return backward_s > 0 ? flops / backward_s / static_cast<double>(ranks.size()) / 1e12 : 0.0;
}

namespace {

// Ops the strategies use that have no C++ Meta kernel in the torch wheel (Python registers some
// when torch is imported there): index_select (rows of a shard), and Ring Self-Attention's
// logsumexp and nan_to_num. Registered once, each only where missing.
at::Tensor index_select_meta(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  auto sizes = self.sizes().vec();
  dim = at::maybe_wrap_dim(dim, self.dim());
  sizes[dim] = index.numel();
  return at::empty(sizes, self.options());
}

at::Tensor logsumexp_meta(const at::Tensor& self, at::IntArrayRef dims, bool keepdim) {
  std::vector<bool> reduced(self.dim(), false);
  for (int64_t d : dims) reduced[at::maybe_wrap_dim(d, self.dim())] = true;
  std::vector<int64_t> sizes;
  for (int64_t d = 0; d < self.dim(); ++d)
    if (!reduced[d]) sizes.push_back(self.size(d));
    else if (keepdim) sizes.push_back(1);
  return at::empty(sizes, self.options());
}

at::Tensor nan_to_num_meta(const at::Tensor& self, std::optional<double>, std::optional<double>,
                           std::optional<double>) {
  return at::empty_like(self);
}

void ensure_meta_kernels() {
  static std::once_flag once;
  static std::unique_ptr<torch::Library> lib;
  std::call_once(once, [] {
    auto missing = [](const char* name) {
      auto op = c10::Dispatcher::singleton().findSchema({name, ""});
      return !op || !op->hasKernelForDispatchKey(c10::DispatchKey::Meta);
    };
    lib = std::make_unique<torch::Library>(torch::Library::IMPL, "aten", c10::DispatchKey::Meta, __FILE__, __LINE__);
    if (missing("aten::index_select")) lib->impl("index_select", TORCH_FN(index_select_meta));
    if (missing("aten::logsumexp")) lib->impl("logsumexp", TORCH_FN(logsumexp_meta));
    if (missing("aten::nan_to_num")) lib->impl("nan_to_num", TORCH_FN(nan_to_num_meta));
  });
}

RankSimulation run_rank(Communicator& comm, const SimulationSetup& s, const ShardPlan& plan) {
  virtual_clock::RankClock clock;
  clock.kernel = s.kernel;
  virtual_clock::set_current(&clock);
  struct Reset {
    ~Reset() { virtual_clock::set_current(nullptr); }
  } reset;

  ContextParallel cp(comm.shared_from_this(), s.options);
  const auto meta = at::TensorOptions().device(at::kMeta).dtype(s.dtype);
  const int64_t rows = plan.local_rows();
  at::Tensor q = at::empty({rows, s.H, s.D}, meta), k = at::empty({rows, s.H_kv, s.D}, meta),
             v = at::empty({rows, s.H_kv, s.D}, meta);
  RankSimulation r;
  AttentionOutput out = cp.forward(q, k, v, plan, s.mask);
  r.forward_s = clock.now;
  if (s.backward) {
    cp.backward(at::empty_like(q), q, k, v, out.out, out.lse, plan, s.mask);
    r.backward_s = clock.now - r.forward_s;
  }
  r.compute_s = clock.compute_s;
  r.comm_wait_s = clock.comm_wait_s;
  r.bytes_fwd = cp.stats().bytes_sent_fwd;
  r.bytes_bwd = cp.stats().bytes_sent_bwd;
  r.peak_bytes = cp.stats().peak_tracked_bytes;
  return r;
}

}  // namespace

Simulation simulate(const SimulationSetup& s) {
  LH_CHECK(s.P >= 1, "simulate: P must be >= 1, got ", s.P);
  LH_CHECK(s.T >= s.P, "simulate: T = ", s.T, " tokens cannot be split over P = ", s.P, " ranks");
  LH_CHECK(s.H >= 1 && s.H_kv >= 1 && s.D >= 1 && s.H % s.H_kv == 0, "simulate: heads ", s.H, ", kv heads ", s.H_kv,
           ", head dim ", s.D, ": expected each >= 1 and heads a multiple of kv heads");
  ensure_meta_kernels();
  CommOptions options;
  options.timeout = s.timeout;
  auto comms = sim::create_world(s.P, s.network, options);
  if (s.nccl_order)
    for (auto& c : comms) c = nccl_order::wrap(c);
  Simulation sim;
  sim.ranks.resize(s.P);
  sim.H = s.H;
  sim.D = s.D;
  // One plan, seen from each rank: the ranks share its rows (and so the needs computed from them).
  const ShardPlan plan0 = ShardPlan::for_mask(s.T, s.mask, s.options.layout, s.P, 0);
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  threads.reserve(s.P);
  for (int r = 0; r < s.P; ++r)
    threads.emplace_back([&, r] {
      try {
        sim.ranks[r] = run_rank(*comms[r], s, plan0.with_rank(r));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
  for (const auto& r : sim.ranks) {
    sim.forward_s = std::max(sim.forward_s, r.forward_s);
    sim.backward_s = std::max(sim.backward_s, r.backward_s);
  }
  const int64_t T = s.T;
  sim.area = s.mask.area(0, T, 0, T);
  return sim;
}

}  // namespace longhaul
