// Repeated timing of a piece of work made of phases (e.g. forward, then backward): warm-up runs,
// then timed runs until a count or a time budget is reached. Device work is synchronised before a
// phase's clock stops, so the times are wall times of finished work.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/Event.h>

#include <functional>
#include <vector>

namespace longhaul::bench {

struct TimingPlan {
  int warmup = 1;         // untimed runs first
  int iters = 5;          // timed runs at most
  double budget_s = 10;   // stop timing once the timed runs together took this long (at least one run)
};

// Times of each timed run, one entry per phase (ms).
using PhaseSamples = std::vector<std::vector<double>>;

// Calls `once` (which returns the duration of each of its phases, ms; NaN for a phase it did not
// run, which counts nothing towards the budget) as the plan says.
PhaseSamples time_phases(const TimingPlan& plan, const std::function<std::vector<double>()>& once);

// Median over runs of the sum of phases [0, n_phases).
double median_of_first_phases(const PhaseSamples& samples, size_t n_phases);

// Waits for the work queued on a device (no-op on the CPU).
void synchronize(const c10::Device& device);

// Milliseconds between successive calls to lap() (the device synchronised first).
class Stopwatch {
 public:
  explicit Stopwatch(c10::Device device);
  double lap();

 private:
  c10::Device device_;
  double last_ms_;
};

// Points in the work this thread queues, timed without stopping it: on a GPU each mark() records
// an event on the thread's current stream (the host keeps queueing; nothing waits for other
// streams, which matters where thread-ranks share one GPU), on the CPU it reads the clock.
class StreamMarks {
 public:
  explicit StreamMarks(c10::Device device) : device_(device) {}
  // Records a point; returns its index.
  size_t mark();
  // Milliseconds from point `from` to point `to` (on a GPU: device time, after `to`'s work is done).
  double ms(size_t from, size_t to);

 private:
  c10::Device device_;
  std::vector<c10::Event> events_;  // GPU
  std::vector<double> wall_ms_;     // CPU
};

}  // namespace longhaul::bench
