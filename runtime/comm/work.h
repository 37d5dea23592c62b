// Work: the handle of a non-blocking communication. wait() blocks until the operation is complete
// or its deadline passes; it throws CommError (TimeoutError for a deadline) with the operation,
// the peer and the elapsed time. A Work may be composed of parts completed by a backend thread and
// of child Works, and may carry a finish step (e.g. a reduction) run once, by the waiting thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace longhaul {

using Clock = std::chrono::steady_clock;

// Seconds the calling thread has spent inside Work::wait() (outermost waits only, so a composed
// Work counts once; a finish step such as the sum of a composed all_reduce is included, and a
// wait on a completed Work adds only its call). Mostly time blocked on communication. Grows monotonically: callers
// take differences around a region, e.g. the exposed communication wait of one attention call.
double comm_wait_seconds();

// The longest deadline a wait can have (about 3 years): a longer one, up to milliseconds::max()
// as "no deadline", would overflow start + timeout on the steady clock.
constexpr std::chrono::milliseconds kLongestTimeout{int64_t(100'000'000) * 1000};

class Work {
 public:
  // what: e.g. "mpi recv from peer 3 (tag 0, 4096 bytes)"; parts: completions to expect; a timeout
  // past kLongestTimeout is that.
  Work(std::string what, std::chrono::milliseconds timeout, int parts = 1);
  virtual ~Work() = default;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  // Blocks until complete; throws CommError/TimeoutError. Idempotent after success.
  void wait();
  // True when complete (running the finish step if needed); throws if the operation failed.
  bool done();
  const std::string& what() const { return what_; }

  // --- for backends ---
  void complete_part();                      // one part finished successfully
  void fail(const std::string& reason);      // the operation failed; wait() rethrows
  void add_child(std::shared_ptr<Work> w) { children_.push_back(std::move(w)); }
  void set_finish(std::function<void()> f) { finish_ = std::move(f); }
  // Appends a step to the finish step (run after the one already set, if any).
  void then(std::function<void()> f);
  Clock::time_point deadline() const { return start_.load() + timeout_; }

  // A Work that is already complete (e.g. zero bytes to move).
  static std::shared_ptr<Work> completed(std::string what);

 protected:
  // Called around a blocking wait (a progress engine may spin for a waiting caller and back off
  // while the caller computes). waiting(true) may throw (e.g. a deadline it enforces itself).
  virtual void waiting(bool /*begin*/) {}
  // Called first by done(): a backend whose operations only progress when driven drives them.
  virtual void poll() {}
  // The operation starts only now (a backend that deferred it): its deadline counts from here.
  void restart_clock() { start_.store(Clock::now()); }

 private:
  void run_finish();

  std::string what_;
  std::atomic<Clock::time_point> start_;  // atomic: restart_clock() may race a waiter's deadline()
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  int parts_left_;
  std::string error_;
  std::vector<std::shared_ptr<Work>> children_;
  std::function<void()> finish_;
  bool finished_ = false;
};

using WorkPtr = std::shared_ptr<Work>;

// Waits for all; the first failure is rethrown after every Work was given its deadline.
void wait_all(const std::vector<WorkPtr>& works);

}  // namespace longhaul
