// What the CUDA routes' one-time probes (ragged cuDNN, the cuDNN band) compare their kernel's
// results with: a NaN anywhere must fail the probe, whatever its position among the differences.
// Also the routes' switches, LONGHAUL_CUDA_VARLEN and LONGHAUL_CUDA_BAND.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "attention/cuda/route_common.h"
#include "attention/cuda/route_cudnn.h"
#include "attention/cuda/route_cudnn_band.h"
#include "core/errors.h"

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

// What a route remembers as a refused shape (and then hands to FlashAttention-2 for good) and what
// it rethrows: a device fault or an out-of-memory error is not the kernel refusing the call.
TEST(RouteProbe, OnlyRefusalsAreRemembered) {
  const c10::SourceLocation here{__func__, __FILE__, __LINE__};
  EXPECT_TRUE(cuda::routes::not_a_refusal(c10::OutOfMemoryError(here, "CUDA out of memory")));
  EXPECT_TRUE(cuda::routes::not_a_refusal(c10::AcceleratorError(here, 700, "an illegal memory access")));
  EXPECT_FALSE(cuda::routes::not_a_refusal(c10::Error(here, "cuDNN Frontend error: no valid engine configs")));
  EXPECT_FALSE(cuda::routes::not_a_refusal(c10::NotImplementedError(here, "not supported")));
  EXPECT_FALSE(cuda::routes::not_a_refusal(Unsupported("the forward graph was refused")));
  EXPECT_FALSE(cuda::routes::not_a_refusal(std::runtime_error("[cudnn_frontend] Error: validate")));
}

// The routes' switches, read on every machine: LONGHAUL_CUDA_VARLEN (unset or auto: ragged cuDNN
// where it agrees and the timing says it is faster; cudnn: where it agrees; flash: never) and
// LONGHAUL_CUDA_BAND (unset or flash: FlashAttention-2; cudnn: the probed band route; auto: probed
// and timed). A typo is an error naming the variable and the values, not a route silently changed.
TEST(RouteSwitches, EachTakesItsValuesAndRefusesAnyOther) {
  using cuda::BandMode;
  using cuda::VarlenMode;
  EXPECT_EQ(cuda::parse_varlen_mode(nullptr), VarlenMode::Timed);
  EXPECT_EQ(cuda::parse_varlen_mode(""), VarlenMode::Timed);
  EXPECT_EQ(cuda::parse_varlen_mode("auto"), VarlenMode::Timed);
  EXPECT_EQ(cuda::parse_varlen_mode("cudnn"), VarlenMode::On);
  EXPECT_EQ(cuda::parse_varlen_mode("flash"), VarlenMode::Off);
  EXPECT_EQ(cuda::parse_band_mode(nullptr), BandMode::Off);
  EXPECT_EQ(cuda::parse_band_mode(""), BandMode::Off);
  EXPECT_EQ(cuda::parse_band_mode("flash"), BandMode::Off);
  EXPECT_EQ(cuda::parse_band_mode("cudnn"), BandMode::On);
  EXPECT_EQ(cuda::parse_band_mode("auto"), BandMode::Auto);
  struct Switch {
    const char* var;
    std::function<void(const char*)> parse;
  };
  for (const Switch& sw : {Switch{"LONGHAUL_CUDA_VARLEN", [](const char* v) { cuda::parse_varlen_mode(v); }},
                           Switch{"LONGHAUL_CUDA_BAND", [](const char* v) { cuda::parse_band_mode(v); }}})
    for (const char* bad : {"cuDNN", "FLASH", "off", "1", "cudnn "}) {
      try {
        sw.parse(bad);
        ADD_FAILURE() << sw.var << "=" << bad << " was accepted";
      } catch (const InvalidArgument& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(std::string(sw.var) + "=" + bad + ": expected "), std::string::npos) << what;
        for (const char* value : {"auto", "cudnn", "flash"}) EXPECT_NE(what.find(value), std::string::npos) << what;
      }
    }
}

}  // namespace
}  // namespace longhaul
