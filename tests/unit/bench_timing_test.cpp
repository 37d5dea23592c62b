// The benchmarks' timing: warm-up and timed runs bounded by a count and a time budget, the median
// of a run's first phases, and marks timed on this thread's stream (wall time on the CPU; the same
// class records CUDA events on a GPU, which `bench layer` on the GPU check exercises).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "benchmarks/common/timing.h"
#include "core/errors.h"

namespace longhaul::bench {
namespace {

TEST(BenchTiming, TimedRunsStopAtTheBudgetAfterTheWarmUp) {
  int calls = 0;
  const TimingPlan plan{.warmup = 2, .iters = 10, .budget_s = 0.003};
  const PhaseSamples s = time_phases(plan, [&] {
    ++calls;
    return std::vector<double>{1.0, 1.0};  // 2 ms a run
  });
  EXPECT_EQ(calls, 4);      // two warm-up runs, then two timed ones reach 4 ms >= 3 ms
  EXPECT_EQ(s.size(), 2u);  // warm-up runs are not samples
  const PhaseSamples all = time_phases({.warmup = 0, .iters = 3, .budget_s = 1e9}, [] {
    return std::vector<double>{1.0};
  });
  EXPECT_EQ(all.size(), 3u);  // the count bounds the runs when the budget does not
  // A phase a run did not have (NaN, e.g. no bare kernel to compare with) does not void the budget.
  const PhaseSamples partial = time_phases({.warmup = 0, .iters = 10, .budget_s = 0.003}, [] {
    return std::vector<double>{2.0, std::nan("")};
  });
  EXPECT_EQ(partial.size(), 2u);
  EXPECT_THROW(time_phases({.warmup = 0, .iters = 0}, [] { return std::vector<double>{}; }), InvalidArgument);
}

TEST(BenchTiming, MedianOfTheFirstPhasesOfEachRun) {
  const PhaseSamples s{{1, 10, 100}, {3, 30, 100}, {2, 20, 100}};
  EXPECT_DOUBLE_EQ(median_of_first_phases(s, 1), 2.0);
  EXPECT_DOUBLE_EQ(median_of_first_phases(s, 2), 22.0);
  EXPECT_THROW(median_of_first_phases(s, 4), InvalidArgument);  // a run has three phases
}

TEST(BenchTiming, StreamMarksTimeTheWorkBetweenThemAndRefuseBadIndices) {
  StreamMarks marks{c10::Device(c10::kCPU)};  // braces: clang reads parentheses as a function declaration
  const size_t a = marks.mark();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const size_t b = marks.mark(), c = marks.mark();
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(c, 2u);
  EXPECT_GE(marks.ms(a, b), 19.0);
  EXPECT_LT(marks.ms(b, c), marks.ms(a, b));
  EXPECT_NEAR(marks.ms(a, c), marks.ms(a, b) + marks.ms(b, c), 1e-6);
  EXPECT_THROW(marks.ms(c, a), InvalidArgument);  // backwards
  EXPECT_THROW(marks.ms(a, 3), InvalidArgument);  // no such mark
}

}  // namespace
}  // namespace longhaul::bench
