// Values computed from a shard plan's rows (and a key: a mask's fingerprint, a degree), shared by
// every copy of the plan: the P ranks of one process (local backend, simulator) compute them once
// and hold one copy. An entry lives while the plan's rows do (a weak reference) and among the
// last few used; expired ones are dropped at the next lookup.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "parallel/shard_plan.h"

namespace longhaul {

template <typename V>
class PlanCache {
 public:
  // The value for (plan's rows, key); make() computes it when absent. Concurrent callers asking
  // for the same value wait for the first (the lock is held while computing).
  template <typename Make>
  std::shared_ptr<const V> get(const ShardPlan& plan, uint64_t key, Make&& make) {
    const auto rows = plan.shared_rows();
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(entries_, [](const Entry& e) { return e.rows.expired(); });
    for (const Entry& e : entries_)
      if (e.rows_ptr == rows.get() && e.key == key) return e.value;
    std::shared_ptr<const V> value = make();
    if (entries_.size() == kEntries) entries_.erase(entries_.begin());
    entries_.push_back({rows, rows.get(), key, value});
    return value;
  }

 private:
  struct Entry {
    std::weak_ptr<const void> rows;  // the plan's row storage (identity, checked alive)
    const void* rows_ptr;
    uint64_t key;
    std::shared_ptr<const V> value;
  };
  static constexpr size_t kEntries = 8;
  std::mutex mu_;
  std::vector<Entry> entries_;  // most recent last
};

}  // namespace longhaul
