// The README's C++ example from an installed longhaul: ContextParallel (ring, zigzag, causal) on
// 2 local thread-ranks gives each rank's rows of the single-process float64 reference.
#include <ATen/ATen.h>
#include <longhaul/longhaul.h>

#include <atomic>
#include <cstdio>

int main() {
  const int64_t T = 301, H = 4, H_kv = 2, D = 16;
  at::manual_seed(7);
  const at::Tensor q = at::randn({T, H, D}, at::kDouble), k = at::randn({T, H_kv, D}, at::kDouble),
                   v = at::randn({T, H_kv, D}, at::kDouble);
  const longhaul::Mask mask = longhaul::Mask::causal();
  const longhaul::AttentionOutput ref = longhaul::attention_forward(
      q, k, v, longhaul::BlockView::self(T), mask, 0, longhaul::AttentionBackend::Reference);
  std::atomic<int> ok{0};
  longhaul::local::run_ranks(2, [&](longhaul::Communicator& comm) {
    longhaul::ShardPlan plan(T, std::nullopt, longhaul::Layout::Zigzag, comm.size(), comm.rank());
    longhaul::ContextParallel cp(comm.shared_from_this(), {.strategy = longhaul::Strategy::Ring,
                                                            .layout = longhaul::Layout::Zigzag});
    at::Tensor out = cp.attention(plan.shard(q), plan.shard(k), plan.shard(v), plan, mask);
    const double err = (out - plan.shard(ref.out)).abs().max().item<double>();
    std::printf("consumer: rank %d of %d, %lld rows, max |out - reference| = %.2e\n", comm.rank(), comm.size(),
                static_cast<long long>(out.size(0)), err);
    if (err < 1e-9) ++ok;
  });
  std::printf("consumer: longhaul %s, %s\n", LONGHAUL_VERSION, ok == 2 ? "ok" : "WRONG");
  return ok == 2 ? 0 : 1;
}
