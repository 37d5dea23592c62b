// Sends in flight with the buffers they read: the buffers stay alive (and counted in CpStats)
// until their Work is done, and no longer — prune() drops finished ones so a strategy's peak
// memory does not grow with the number of steps.
#pragma once

#include <vector>

#include "parallel/stats.h"
#include "runtime/comm/work.h"

namespace longhaul {

class InFlight {
 public:
  explicit InFlight(CpStats& stats) : stats_(&stats) {}

  void add(WorkPtr work, std::vector<at::Tensor> buffers) {
    Entry e{std::move(work), {}};
    for (auto& b : buffers) e.buffers.emplace_back(*stats_, std::move(b));
    entries_.push_back(std::move(e));
    prune();
  }
  // Drops the sends that have completed (done() rethrows a failed one).
  void prune() {
    std::vector<Entry> keep;
    for (auto& e : entries_)
      if (!e.work->done()) keep.push_back(std::move(e));
    entries_ = std::move(keep);
  }
  void wait() {
    std::vector<WorkPtr> works;
    for (auto& e : entries_) works.push_back(e.work);
    wait_all(works);
    entries_.clear();
  }

 private:
  struct Entry {
    WorkPtr work;
    std::vector<Tracked> buffers;
  };
  CpStats* stats_;
  std::vector<Entry> entries_;
};

}  // namespace longhaul
