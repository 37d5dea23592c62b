#include "data/prefetch_loader.h"

#include <chrono>

#include "core/errors.h"

namespace longhaul::data {

PrefetchLoader::PrefetchLoader(std::shared_ptr<TokenSource> source, std::shared_ptr<PlanSource> plans, int depth)
    : source_(std::move(source)), plans_(std::move(plans)), depth_(static_cast<size_t>(depth)) {
  LH_CHECK(source_ && plans_, "PrefetchLoader: needs a token source and a plan source");
  LH_CHECK(depth >= 1, "PrefetchLoader: depth must be >= 1, got ", depth);
  state_ = plans_->save_state();
  thread_ = std::thread([this] { run(); });
}

PrefetchLoader::~PrefetchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PrefetchLoader::run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || queue_.size() < depth_; });
      if (stop_) return;
    }
    Item item;
    try {
      if (auto plan = plans_->next()) item.batch = build_batch(*source_, std::move(*plan));
      item.state_after = plans_->save_state();
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool last = !item.batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(item));
    }
    cv_.notify_all();
    if (last) return;  // end of the epoch, or an error: nothing more to prepare
  }
}

std::optional<Batch> PrefetchLoader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) return std::nullopt;
  const auto t0 = std::chrono::steady_clock::now();
  cv_.wait(lock, [&] { return !queue_.empty(); });
  waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Item item = std::move(queue_.front());
  queue_.pop_front();
  lock.unlock();
  cv_.notify_all();
  if (item.error) {
    finished_ = true;
    std::rethrow_exception(item.error);
  }
  std::lock_guard<std::mutex> relock(mu_);
  state_ = item.state_after;
  if (!item.batch) finished_ = true;
  return std::move(item.batch);
}

std::string PrefetchLoader::save_state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

}  // namespace longhaul::data
