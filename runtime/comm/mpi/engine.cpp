#include "runtime/comm/mpi/engine.h"

#include <atomic>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "runtime/comm/mpi/check.h"
#include "core/errors.h"

namespace longhaul::mpi {

namespace {
std::mutex g_instance_mu;
Engine* g_instance = nullptr;

// While a caller waits (up to kSpinWhileWaiting), or shortly after activity, the engine polls
// without pause (latency).
// Otherwise the caller is computing: the engine sleeps between polls, doubling the pause up to
// kMaxPause, so it takes little of the caller's core; a caller that starts to wait, or a new
// operation, wakes it at once, so the pause delays no wait. kMaxPause matters when requests stay
// outstanding through long compute (TokenRing posts the receives of its returning results first):
// at 320 µs the wake-ups (a context switch on a core a rank computes on) cost TokenRing 6-8% at
// P=2 (efficiency 0.87); at 2.56 ms 0.95-0.98, with unchanged latency, bandwidth and overlap rows.
constexpr auto kSpinAfterActivity = std::chrono::microseconds(50);
// A caller blocked longer than this (a peer still computing) no longer justifies a hot spin: the
// engine then polls with a yield between polls, leaving the core to ranks that compute.
constexpr auto kSpinWhileWaiting = std::chrono::milliseconds(2);
constexpr auto kMinPause = std::chrono::microseconds(20);
constexpr auto kMaxPause = std::chrono::microseconds(2560);
}  // namespace

namespace {
// MPI starts once per process: a World destroyed ends it for good.
const char* const kFinalised = "MPI was already finalised in this process (when the last World using it was destroyed); "
                               "MPI cannot start again, so keep one World alive for as long as its communicators "
                               "are used";
}  // namespace

Engine& Engine::instance() {
  std::lock_guard<std::mutex> lock(g_instance_mu);
  if (!g_instance) {
    // After MPI_Finalize an engine could only fail: it starts no thread (none would be joined).
    int finalized = 0;
    MPI_Finalized(&finalized);
    g_instance = finalized ? new Engine(kFinalised) : new Engine();
  }
  return *g_instance;
}

bool Engine::running() {
  std::lock_guard<std::mutex> lock(g_instance_mu);
  return g_instance != nullptr && g_instance->thread_.joinable();
}

namespace {
std::atomic<int> g_abort_code{1};
}

void Engine::set_abort_code(int code) { g_abort_code = code; }

void Engine::shutdown() {
  std::lock_guard<std::mutex> lock(g_instance_mu);
  delete g_instance;
  g_instance = nullptr;
}

Engine::Engine() { thread_ = std::thread([this] { loop(); }); }

Engine::Engine(std::string error) : ready_(true), finished_(true), init_error_(std::move(error)) {}

void Engine::wait_started(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return ready_; }))
    throw TimeoutError(detail::str_cat("backend mpi: starting MPI (MPI_Init) did not complete within ",
                                       timeout.count() / 1000.0, " s: a rank may have exited or failed before "
                                       "initialising MPI, or the launcher cannot reach it"));
  if (!init_error_.empty()) throw CommError("backend mpi: " + init_error_);
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (!thread_.joinable()) return;
  // A blocking MPI call a missing peer never completes (MPI_Init, or a setup call whose wait
  // timed out) would hang the join: after a moment's grace the process ends with the abort code,
  // as MPI_Abort would end it.
  std::unique_lock<std::mutex> lock(mu_);
  if ((!ready_ || sync_timed_out_) && !cv_.wait_for(lock, std::chrono::seconds(2), [&] { return finished_; })) {
    std::cerr << "longhaul: backend mpi is stuck in a call that a missing rank never completes; ending this process "
                 "(exit code "
              << g_abort_code.load() << ")" << std::endl;
    std::_Exit(g_abort_code.load());
  }
  lock.unlock();
  thread_.join();
}

void Engine::submit(const WorkPtr& work, std::function<std::vector<Request>()> post, std::vector<at::Tensor> keep) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ready_ && !init_error_.empty()) {  // an engine that could not start runs nothing: say so at once
      work->fail(init_error_);
      return;
    }
    queue_.push_back({work, std::move(post), std::move(keep)});
  }
  cv_.notify_all();
}

void Engine::fail_queued() {
  std::deque<Op> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queue_);
  }
  for (auto& op : queued) op.work->fail(init_error_);
}

void Engine::add_waiter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++waiters_;
    last_waiter_ = Clock::now();
  }
  cv_.notify_all();
}

void Engine::remove_waiter() {
  std::lock_guard<std::mutex> lock(mu_);
  --waiters_;
}

void Engine::run_sync(std::function<void()> fn, std::chrono::milliseconds timeout, const std::string& what) {
  auto work = std::make_shared<Work>(what, timeout);
  submit(work, [fn = std::move(fn)] { fn(); return std::vector<Request>{}; }, {});
  try {
    work->wait();
  } catch (const TimeoutError&) {
    sync_timed_out_ = true;
    throw;
  }
}

void Engine::loop() {
  {
    // Without the lock: wait_started waits on it with a deadline while MPI_Init blocks. MPI is not
    // finalised here: instance() makes a thread-less engine for that.
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &thread_level_) != MPI_SUCCESS)
        init_error_ = "MPI_Init_thread failed";
      we_initialized_ = true;
    } else {
      MPI_Query_thread(&thread_level_);
      if (thread_level_ < MPI_THREAD_SERIALIZED)
        init_error_ = detail::str_cat("MPI was initialised by someone else with thread level ", thread_level_,
                                      "; longhaul calls MPI from its progress thread and needs "
                                      "MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE");
    }
    if (init_error_.empty()) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    std::lock_guard<std::mutex> lock(mu_);
    ready_ = true;
  }
  cv_.notify_all();
  if (!init_error_.empty()) {
    fail_queued();
    mark_finished();
    return;
  }

  auto last_activity = Clock::now();
  auto pause = kMinPause;
  bool idle_poll = false;  // the previous poll found nothing to do
  while (true) {
    std::deque<Op> ops;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (queue_.empty() && outstanding_.empty() && !stop_) {
        cv_.wait(lock, [&] { return !queue_.empty() || stop_; });
      } else if (idle_poll && queue_.empty() && !stop_ &&
                 Clock::now() - std::max(last_activity, last_waiter_) >
                     (waiters_ > 0 ? kSpinWhileWaiting : kSpinAfterActivity)) {
        if (waiters_ > 0) {
          // A caller waits for a transfer that may need many more polls (a large message moves in
          // fragments, each poll advancing a few): timed pauses would stretch it by orders of
          // magnitude. Yield instead: a rank that computes on this core still gets it.
          lock.unlock();
          std::this_thread::yield();
          lock.lock();
        } else {
          const int waiters_before = waiters_;
          cv_.wait_for(lock, pause, [&] { return !queue_.empty() || waiters_ > waiters_before || stop_; });
          pause = std::min(pause * 2, std::chrono::duration_cast<std::chrono::microseconds>(kMaxPause));
        }
      }
      ops.swap(queue_);
      if (stop_ && ops.empty()) break;
    }
    for (auto& op : ops) {
      last_activity = Clock::now();
      std::vector<Request> reqs;
      try {
        reqs = op.post();
      } catch (const std::exception& e) {
        op.work->fail(e.what());
        continue;
      }
      if (reqs.empty()) {
        op.work->complete_part();
        continue;
      }
      // The Work has one part; it completes when the last of its requests does.
      auto keep = std::make_shared<std::vector<at::Tensor>>(std::move(op.keep));
      auto remaining = std::make_shared<int>(static_cast<int>(reqs.size()));
      for (auto& r : reqs) {
        handles_.push_back(r.handle);
        outstanding_.push_back({r, op.work, keep});
        remaining_.push_back(remaining);
      }
    }
    idle_poll = false;
    if (outstanding_.empty()) continue;
    const size_t before = outstanding_.size();
    poll();
    if (outstanding_.size() < before || !ops.empty()) {
      last_activity = Clock::now();
      pause = kMinPause;
    } else {
      idle_poll = true;
    }
  }

  if (we_initialized_) {
    if (outstanding_.empty() && abandoned_ == 0) {
      MPI_Finalize();
    } else {
      // Requests that can never complete (a peer stopped or died): finalising would hang.
      MPI_Abort(MPI_COMM_WORLD, g_abort_code.load());
    }
  }
  mark_finished();
}

void Engine::mark_finished() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
  }
  cv_.notify_all();
}

void Engine::poll() {
  int n = static_cast<int>(handles_.size());
  std::vector<int> indices(n);
  std::vector<MPI_Status> statuses(n);
  int count = 0;
  const int rc = MPI_Testsome(n, handles_.data(), &count, indices.data(), statuses.data());
  if (count == MPI_UNDEFINED || count == 0) {
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
      for (auto& o : outstanding_) o.work->fail(error_string(rc));
      // The requests are in an unknown state; drop them (the process will abort at shutdown).
      handles_.clear();
      abandoned_ += outstanding_.size();
      outstanding_.clear();
      remaining_.clear();
    }
    return;
  }
  std::vector<bool> finished(n, false);
  for (int i = 0; i < count; ++i) {
    const int k = indices[i];
    finished[k] = true;
    Outstanding& o = outstanding_[k];
    const MPI_Status& st = statuses[i];
    const int err = rc == MPI_ERR_IN_STATUS ? st.MPI_ERROR : MPI_SUCCESS;
    if (err != MPI_SUCCESS) {
      std::string text = error_string(err);
      if (text.empty()) text = detail::str_cat("MPI error code ", err);
      if (o.req.peer < 0)  // a collective (no peer): its ranks passed different sizes, dtypes or ops
        o.work->fail(detail::str_cat(text, " (every rank of a collective must pass the same element count, dtype "
                                           "and reduce op)"));
      else
        o.work->fail(detail::str_cat(o.req.expect_bytes >= 0 ? "receive from peer " : "send to peer ", o.req.peer,
                                     ": ", text,
                                     o.req.expect_bytes >= 0
                                         ? detail::str_cat(" (the receive buffer holds ", o.req.expect_bytes, " bytes)")
                                         : std::string()));
      continue;
    }
    if (o.req.expect_bytes >= 0) {
      int got = 0;
      MPI_Get_count(&st, MPI_BYTE, &got);
      if (got != o.req.expect_bytes) {
        o.work->fail(detail::str_cat("message from peer ", o.req.peer, " has ", got,
                                     " bytes, the receive expects ", o.req.expect_bytes,
                                     " bytes (mismatched sizes or dtypes between the peers)"));
        continue;
      }
    }
    if (--*remaining_[k] == 0) o.work->complete_part();
  }
  // Compact the arrays (completed handles are MPI_REQUEST_NULL now).
  size_t w = 0;
  for (int k = 0; k < n; ++k) {
    if (finished[k]) continue;
    handles_[w] = handles_[k];
    outstanding_[w] = std::move(outstanding_[k]);
    remaining_[w] = std::move(remaining_[k]);
    ++w;
  }
  handles_.resize(w);
  outstanding_.resize(w);
  remaining_.resize(w);
}

}  // namespace longhaul::mpi
