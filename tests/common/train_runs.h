// What the train/ tests compare: a tiny recall task, the losses and parameters of a run, the
// float32 tolerances under which two runs (CP × DP splits, thread-ranks or MPI ranks) are equal,
// and what "it trains" means for a run in a low precision.
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "train/task.h"
#include "train/trainer.h"

namespace longhaul::testing {

// Documents of 2^5..2^7 tokens with two key-value pairs each: seconds per test on 2 cores.
inline train::TaskOptions tiny_recall_task() {
  train::TaskOptions t;
  t.min_log2 = 5;
  t.max_log2 = 7;
  t.pairs = 2;
  t.tokens = 1 << 14;
  return t;
}

struct TrainRun {
  std::vector<double> losses;
  std::vector<at::Tensor> params;  // CPU copies, in Transformer::ordered_parameters() order
  std::vector<int> degrees;        // the CP degree of each step
};

inline std::vector<at::Tensor> parameter_copies(train::Trainer& t) {
  std::vector<at::Tensor> out;
  for (const auto& [name, p] : t.model().ordered_parameters()) out.push_back(p.detach().cpu().clone());
  return out;
}

// float32 end to end: a CP rank sums attention blocks in another order than one rank does, and
// Adam's normalised update turns relative gradient differences into parameter differences of at
// most ~lr · (relative error); after a few steps at lr 1e-3 both stay far below these bounds.
constexpr double kLossTol = 1e-5;   // relative (measured: <= 2e-7)
constexpr double kParamTol = 1e-5;  // absolute (measured: <= 2e-7; parameters are O(0.02–1))

// Every step's loss within loss_tol (relative), every parameter within param_tol (absolute).
inline void expect_same_run(const TrainRun& a, const TrainRun& b, const std::string& what, double loss_tol = kLossTol,
                            double param_tol = kParamTol) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  double dl = 0, dp = 0;
  for (size_t i = 0; i < a.losses.size(); ++i) dl = std::max(dl, std::abs(a.losses[i] - b.losses[i]) / std::abs(a.losses[i]));
  for (size_t i = 0; i < a.params.size(); ++i) dp = std::max(dp, (a.params[i] - b.params[i]).abs().max().item<double>());
  std::printf("  %s: max relative loss difference %.3g, max parameter difference %.3g (loss %.5f -> %.5f)\n",
              what.c_str(), dl, dp, a.losses.front(), a.losses.back());
  for (size_t i = 0; i < a.losses.size(); ++i)
    EXPECT_NEAR(a.losses[i], b.losses[i], loss_tol * std::abs(a.losses[i])) << what << ", step " << i + 1;
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i)
    EXPECT_LE((a.params[i] - b.params[i]).abs().max().item<double>(), param_tol) << what << ", parameter " << i;
}

// It trains: every loss finite, and the mean of the last five below the mean of the first five by
// at least `margin` (nats).
inline void expect_loss_falls(const TrainRun& r, const std::string& what, double margin = 0.1) {
  ASSERT_GE(r.losses.size(), size_t(10)) << what;
  for (size_t i = 0; i < r.losses.size(); ++i) EXPECT_TRUE(std::isfinite(r.losses[i])) << what << ", step " << i + 1;
  double first = 0, last = 0;
  for (size_t i = 0; i < 5; ++i) first += r.losses[i] / 5, last += r.losses[r.losses.size() - 1 - i] / 5;
  std::printf("  %s: mean loss of the first 5 steps %.4f, of the last 5 %.4f\n", what.c_str(), first, last);
  EXPECT_LT(last, first - margin) << what << ": the loss did not fall";
}

}  // namespace longhaul::testing
