// A loader that prepares the next batches on a background thread while the trainer computes:
// plans come from a PlanSource (DD or concat-and-chunk sampler), tokens from a TokenSource. The
// source and the plan source belong to the loader's thread while it runs.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "data/batch.h"

namespace longhaul::data {

class PrefetchLoader {
 public:
  // depth: batches prepared ahead (>= 1). Restore the plan source's state before constructing.
  PrefetchLoader(std::shared_ptr<TokenSource> source, std::shared_ptr<PlanSource> plans, int depth = 2);
  ~PrefetchLoader();  // stops the thread (waits for the batch it is reading)
  PrefetchLoader(const PrefetchLoader&) = delete;
  PrefetchLoader& operator=(const PrefetchLoader&) = delete;

  // The next batch (blocks until it is ready), or nothing at the end of the epoch. An error of the
  // background thread (a corrupt chunk, say) is rethrown here.
  std::optional<Batch> next();
  // The plan source's state after the last batch next() returned: what a checkpoint saves
  // (batches prepared but not yet handed out are not part of it).
  std::string save_state() const;
  // Seconds next() spent waiting for the background thread, in total.
  double waited_seconds() const { return waited_s_; }

 private:
  struct Item {
    std::optional<Batch> batch;
    std::string state_after;
    std::exception_ptr error;
  };
  void run();

  std::shared_ptr<TokenSource> source_;
  std::shared_ptr<PlanSource> plans_;
  const size_t depth_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false, finished_ = false;
  std::string state_;
  double waited_s_ = 0;
  std::thread thread_;
};

}  // namespace longhaul::data
