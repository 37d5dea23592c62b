// What the CUDA routes' one-time probes (ragged cuDNN, the cuDNN band) compare their kernel's
// results with: a NaN anywhere must fail the probe, whatever its position among the differences.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "attention/cuda/route_common.h"

namespace longhaul {
namespace {

TEST(RouteProbe, ANaNDifferenceAnywhereFailsTheProbe) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_DOUBLE_EQ(cuda::routes::worst_difference({1e-3, 4e-3, 2e-3}), 4e-3);
  EXPECT_TRUE(cuda::routes::probe_agrees(cuda::routes::worst_difference({1e-3, 4e-3, 2e-3})));
  EXPECT_FALSE(cuda::routes::probe_agrees(cuda::routes::worst_difference({1e-3, 0.5, 2e-3})));
  // out, lse, dq, dk, dv: a NaN in any one of them.
  for (int at_position = 0; at_position < 5; ++at_position) {
    double d[5] = {1e-3, 2e-3, 3e-3, 4e-3, 5e-3};
    d[at_position] = nan;
    const double worst = cuda::routes::worst_difference({d[0], d[1], d[2], d[3], d[4]});
    EXPECT_TRUE(std::isnan(worst)) << "NaN at position " << at_position << " gave " << worst;
    EXPECT_FALSE(cuda::routes::probe_agrees(worst)) << "NaN at position " << at_position;
  }
}

TEST(RouteProbe, RelativeDifferenceOfKernelOutputs) {
  at::manual_seed(7);
  const at::Tensor a = at::randn({16, 2, 8}).to(at::kBFloat16);
  EXPECT_EQ(cuda::routes::relative_difference(a, a), 0.0);
  EXPECT_NEAR(cuda::routes::relative_difference(a * 1.01, a), 0.01, 2e-3);  // 0.01, give or take bf16 rounding
  at::Tensor b = a.clone();
  b[3][1][5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(cuda::routes::relative_difference(b, a)));
  EXPECT_FALSE(cuda::routes::probe_agrees(cuda::routes::relative_difference(b, a)));
}

}  // namespace
}  // namespace longhaul
