#include "benchmarks/cp/cp_check.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "benchmarks/kernel/check.h"
#include "parallel/context_parallel.h"

namespace longhaul::bench {

int64_t check_cp_against_reference(Communicator& comm, const CpCheckCase& c, const MaskCaseOptions& masks) {
  const Mask mask = make_scaled_mask(c.mask, c.t, c.small_t, masks);
  const ShardPlan plan = ShardPlan::for_mask(c.small_t, mask, c.layout, comm.size(), comm.rank());
  // The same global inputs on every rank (a private generator: thread-ranks share torch's global one).
  auto gen = at::detail::createCPUGenerator(c.seed);
  auto normal = [&](int64_t heads) {
    return at::randn({c.small_t, heads, c.d}, gen, at::TensorOptions(at::kFloat)).to(c.dtype);
  };
  const at::Tensor q = normal(c.h), k = normal(c.h_kv), v = normal(c.h_kv), dout = normal(c.h);
  const BlockView all = BlockView::self(c.small_t);
  auto f64 = [](const at::Tensor& x) { return x.to(at::kDouble); };
  const AttentionOutput ref = attention_forward(f64(q), f64(k), f64(v), all, mask, 0, AttentionBackend::Reference);
  const AttentionGrads ref_g = attention_backward(f64(dout), f64(q), f64(k), f64(v), ref.out, ref.lse, all, mask, 0,
                                                  AttentionBackend::Reference);

  Options o;
  o.strategy = c.strategy;
  o.layout = c.layout;
  ContextParallel cp(comm.shared_from_this(), o);
  const at::Tensor ql = plan.shard(q), kl = plan.shard(k), vl = plan.shard(v);
  const AttentionOutput got = cp.forward(ql, kl, vl, plan, mask);
  const AttentionGrads got_g = cp.backward(plan.shard(dout), ql, kl, vl, got.out, got.lse, plan, mask);

  const Tolerance tol = tolerance_for(c.dtype);
  auto lse_shard = [&](const at::Tensor& lse) { return plan.shard(lse.transpose(0, 1)).transpose(0, 1); };
  int64_t wrong = count_outside(got.out, plan.shard(ref.out), tol) + count_outside(got.lse, lse_shard(ref.lse), tol) +
                  count_outside(got_g.dq, plan.shard(ref_g.dq), tol) +
                  count_outside(got_g.dk, plan.shard(ref_g.dk), tol) + count_outside(got_g.dv, plan.shard(ref_g.dv), tol);
  at::Tensor total = at::full({1}, wrong, at::kLong);
  comm.all_reduce(total)->wait();
  return total.item<int64_t>();
}

}  // namespace longhaul::bench
