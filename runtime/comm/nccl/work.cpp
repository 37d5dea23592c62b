#include "runtime/comm/nccl/work.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <condition_variable>
#include <thread>

#include "runtime/comm/nccl/check.h"

namespace longhaul::nccl {
namespace {

constexpr auto kErrorCheckPeriod = std::chrono::milliseconds(2);
// Works nobody waits on get this long past their deadline before the watcher aborts, so that a
// waiter (which aborts at the deadline itself) always reports the TimeoutError first.
constexpr auto kWatcherGrace = std::chrono::milliseconds(200);

class Watcher {
 public:
  static Watcher& instance() {
    // Leaked on purpose: the thread must not be joined during static destruction.
    static Watcher* w = new Watcher();
    return *w;
  }
  void add(std::shared_ptr<NcclWork> work) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      works_.push_back(std::move(work));
    }
    cv_.notify_one();
  }

 private:
  Watcher() { std::thread([this] { loop(); }).detach(); }

  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !works_.empty(); });
      std::vector<std::shared_ptr<NcclWork>> batch;
      batch.swap(works_);
      lock.unlock();
      std::vector<std::shared_ptr<NcclWork>> keep, reap;
      for (auto& w : batch) {
        if (!w->poll(/*enforce_deadline=*/true))
          keep.push_back(std::move(w));
        else if (w.use_count() == 1 && w->holds_last_handle())
          reap.push_back(std::move(w));
      }
      batch.clear();  // released outside the lock: may free tensors
      // The last works of a communicator the caller dropped: its teardown waits for the stream and
      // for the peers' finalize (up to Handle::teardown_timeout), which must not stop the polling
      // of every other communicator's works.
      if (!reap.empty()) std::thread([r = std::move(reap)]() mutable { r.clear(); }).detach();
      std::this_thread::sleep_for(std::chrono::microseconds(keep.empty() ? 0 : 200));
      lock.lock();
      works_.insert(works_.end(), keep.begin(), keep.end());
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<NcclWork>> works_;
};

}  // namespace

void watch(std::shared_ptr<NcclWork> work) { Watcher::instance().add(std::move(work)); }

NcclWork::NcclWork(std::string what, std::chrono::milliseconds timeout, std::shared_ptr<Handle> handle,
                   std::vector<at::Tensor> keep)
    : Work(std::move(what), timeout), handle_(std::move(handle)), keep_(std::move(keep)) {}

void NcclWork::posted(std::shared_ptr<at::cuda::CUDAEvent> done) {
  restart_clock();  // a deferred operation was waiting to be posted: its time starts now
  {
    std::lock_guard<std::mutex> lock(poll_mu_);
    done_ = done;
  }
  // After completion the caller's stream is ordered after the communication (a no-op on the
  // device by then, but it keeps the contract explicit for whoever waits on any stream).
  const int device = handle_->device();
  set_finish([done, device] {
    done->block(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)));
  });
}

void NcclWork::settle_ok() {
  settled_ = true;
  keep_.clear();
  complete_part();
}

void NcclWork::settle_error(const std::string& reason) {
  settled_ = true;
  fail(reason);  // keep_ stays: a killed kernel's buffers are not handed back to the allocator early
}

void NcclWork::abandon(const std::string& reason) {
  std::lock_guard<std::mutex> lock(poll_mu_);
  if (!settled_) settle_error(reason);
}

void NcclWork::poll() {
  {
    std::lock_guard<std::mutex> lock(poll_mu_);
    if (settled_) return;
    if (!done_) {
      if (Clock::now() >= deadline())
        settle_error(detail::str_cat(
            "it was deferred and never posted within its deadline: a standalone send or receive is posted at the "
            "next wait() on one of them, exchange(), collective or split() on its communicator, not by done()"));
      return;
    }
  }
  // Posted: done() tells what the device has reached now, not what the watcher saw last.
  poll(/*enforce_deadline=*/false);
}

bool NcclWork::poll(bool enforce_deadline) {
  std::lock_guard<std::mutex> lock(poll_mu_);
  if (settled_) return true;
  cudaError_t q = cudaErrorNotReady;
  if (done_) {
    // The watcher thread's CUDA calls on the communicator's device: a thread that never set one
    // would open a context on GPU 0 in every process.
    const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(handle_->device()));
    q = cudaEventQuery(done_->event());
    (void)cudaGetLastError();  // "not ready" too: a later launch check on this thread must not see it
  }
  if (q == cudaSuccess) {  // finished before any abort: its data is whole
    settle_ok();
    return true;
  }
  if (handle_->aborted()) {
    settle_error(detail::str_cat("the NCCL communicator was aborted earlier (", handle_->abort_reason(),
                                 "); create a new one"));
    return true;
  }
  if (!done_) return false;  // deferred, not posted yet
  if (q != cudaErrorNotReady) {
    settle_error(detail::str_cat("CUDA error while waiting for the operation: ", cudaGetErrorString(q)));
    return true;
  }
  const auto now = Clock::now();
  if (now - last_error_check_ >= kErrorCheckPeriod) {
    last_error_check_ = now;
    std::unique_lock<std::mutex> comm_lock(handle_->mutex(), std::try_to_lock);  // busy: next time
    if (comm_lock.owns_lock()) {
      const std::string err = handle_->check_async_error();
      if (!err.empty()) {
        settle_error(err);
        return true;
      }
    }
  }
  if (enforce_deadline && !has_waiter_.load() && now >= deadline() + kWatcherGrace) {
    const std::string reason = detail::str_cat(what(), " passed its deadline with nobody waiting");
    // The watcher does not block on a communicator another thread is inside: that call ends by its
    // own deadline, and this work is polled again on the next pass.
    if (!handle_->try_abort(reason)) return false;
    settle_error(reason + "; the NCCL communicator was aborted");
    return true;
  }
  return false;
}

void NcclWork::waiting(bool begin) {
  has_waiter_ = begin;
  if (!begin) return;
  if (on_wait_) {
    try {
      on_wait_();  // posts deferred operations; a failure fails this work (reported by wait())
    } catch (const std::exception& e) {
      abandon(e.what());
    }
  }
  // Spin briefly, then sleep in short steps: communication often ends within microseconds.
  int spins = 0;
  while (!poll(/*enforce_deadline=*/false)) {
    bool posted;
    {
      std::lock_guard<std::mutex> lock(poll_mu_);
      posted = done_ != nullptr;
    }
    // Not posted yet: another thread's flush is posting it (its time starts then), or fails it.
    if (posted && Clock::now() >= deadline()) {
      // Work::wait throws the TimeoutError (naming the operation, its peers and the elapsed time)
      // right after this. settled_ is set before the abort so that no other poll (the watcher)
      // sees the aborted handle first and fails this work with a CommError; fail() is never
      // called, so wait() reports the timeout. Other works of the comm get "aborted earlier".
      {
        std::lock_guard<std::mutex> lock(poll_mu_);
        if (settled_) continue;  // settled meanwhile (completed or failed): poll() reports it
        settled_ = true;         // the watcher drops it
      }
      handle_->abort(detail::str_cat(what(), " passed its deadline"));
      return;
    }
    if (++spins > 200) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

}  // namespace longhaul::nccl
