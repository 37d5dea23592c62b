// bench kernel's check at the configuration's own size: sampled query rows of the whole sequence
// against the float64 reference of those rows alone. Right kernels pass on odd lengths and every
// kind of mask; a kernel wrong only far into the sequence, or only in its backward, is caught.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "benchmarks/kernel/check.h"

namespace longhaul::bench {
namespace {

SampledRowsCase make_case(KernelBackend kb, int64_t t, const Mask& mask, at::ScalarType dtype, int64_t rows = 32) {
  at::manual_seed(11);
  auto normal = [&](int64_t h) { return at::randn({t, h, 16}).to(dtype); };
  return {std::move(kb), normal(4), normal(2), normal(2), normal(4), mask, /*backward=*/true, rows};
}

TEST(BenchCheck, SampledRowsAtSizeAgreeForTheCpuKernel) {
  const int64_t t = 1001;
  const std::vector<int64_t> docs{0, 400, 401, 750, t};
  for (const Mask& mask : {Mask::causal(), Mask::causal().window(127, 0), Mask::causal().documents(docs),
                           Mask::full().documents(docs)})
    for (auto dtype : {at::kFloat, at::kBFloat16}) {
      const CheckResult r = check_sampled_rows(make_case(kernel_backend("cpu"), t, mask, dtype));
      EXPECT_EQ(r.wrong_forward, 0) << mask.describe() << " " << dtype;
      EXPECT_EQ(r.wrong_backward, 0) << mask.describe() << " " << dtype;
    }
  // More rows asked for than the sequence has: every row, once.
  const CheckResult all = check_sampled_rows(make_case(kernel_backend("cpu"), 5, Mask::causal(), at::kFloat, 64));
  EXPECT_EQ(all.wrong_forward + all.wrong_backward, 0);
}

TEST(BenchCheck, AKernelWrongOnlyFarIntoTheSequenceIsCaught) {
  // Right up to 2048 tokens (the small check runs 384), wrong on the last row of longer sequences:
  // what an offset that overflows at size would do.
  KernelBackend late = kernel_backend("cpu");
  late.forward = [cpu = late.forward](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const BlockView& view, const Mask& mask) {
    AttentionOutput r = cpu(q, k, v, view, mask);
    r.out = r.out.clone();
    if (q.size(0) > 2048) r.out[q.size(0) - 1].add_(1.0);
    return r;
  };
  const CheckResult small = check_sampled_rows(make_case(late, 384, Mask::causal(), at::kFloat));
  EXPECT_EQ(small.wrong_forward, 0);
  const CheckResult r = check_sampled_rows(make_case(late, 4097, Mask::causal(), at::kFloat));
  EXPECT_EQ(r.wrong_forward, 4 * 16);  // the last row's H × D out elements; its lse is right
}

TEST(BenchCheck, AWrongBackwardIsCaughtOnTheSampledRowsDq) {
  KernelBackend off = kernel_backend("cpu");
  off.backward = [cpu = off.backward](const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                      const BlockView& view, const Mask& mask) {
    AttentionGrads g = cpu(dout, q, k, v, out, lse, view, mask);
    g.dq = g.dq * 1.05;
    return g;
  };
  const CheckResult r = check_sampled_rows(make_case(off, 1001, Mask::causal().window(63, 0), at::kFloat));
  EXPECT_EQ(r.wrong_forward, 0);
  EXPECT_GT(r.wrong_backward, 0);
}

}  // namespace
}  // namespace longhaul::bench
