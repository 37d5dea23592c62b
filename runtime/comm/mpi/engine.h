// The MPI progress engine: one thread per process that owns every MPI call (MPI is initialised
// on it, so MPI_THREAD_SERIALIZED suffices). Callers queue the start of an operation; the engine
// posts the non-blocking MPI calls and keeps testing the outstanding requests, so transfers
// advance while the caller computes. With nothing outstanding it sleeps on a condition variable
// and costs no CPU.
#pragma once

#include <mpi.h>

#include <ATen/core/Tensor.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/comm/work.h"

namespace longhaul::mpi {

// What a started request needs when it completes.
struct Request {
  MPI_Request handle = MPI_REQUEST_NULL;
  int64_t expect_bytes = -1;  // for receives: the byte count the message must have
  int peer = -1;
};

class Engine {
 public:
  // The process's engine; starts MPI on first use.
  static Engine& instance();
  // Ends the engine and MPI: MPI_Finalize when every request completed, MPI_Abort(1) otherwise
  // (a failed or timed-out operation leaves requests no one will match; finalising would hang).
  static void shutdown();
  static void set_abort_code(int code);
  static bool running();

  // Runs `post` on the engine thread; it returns the requests it started. `work` (one part)
  // completes when all of them have; `keep` holds the tensors alive until then.
  void submit(const WorkPtr& work, std::function<std::vector<Request>()> post, std::vector<at::Tensor> keep);
  // Waits until MPI is initialised on the engine thread, up to `timeout`: TimeoutError if a rank
  // never arrives (it exited or failed before initialising MPI), CommError if MPI_Init failed.
  void wait_started(std::chrono::milliseconds timeout);
  // Runs fn on the engine thread and waits for it, up to `timeout` (blocking MPI setup calls). The
  // engine keeps fn: after a timeout it may still run, so fn must own what it touches (captured
  // by value, e.g. a shared_ptr to its results), never the caller's stack.
  void run_sync(std::function<void()> fn, std::chrono::milliseconds timeout, const std::string& what);

  int thread_level() const { return thread_level_; }

  // A caller blocks in wait(): poll without sleeping until it is done.
  void add_waiter();
  void remove_waiter();

 private:
  Engine();
  explicit Engine(std::string error);  // an engine that fails everything with `error`, without a thread
  ~Engine();
  void loop();
  void poll();
  void mark_finished();
  void fail_queued();  // an engine that could not start fails what was submitted

  struct Op {
    WorkPtr work;
    std::function<std::vector<Request>()> post;
    std::vector<at::Tensor> keep;
  };
  struct Outstanding {
    Request req;
    WorkPtr work;
    std::shared_ptr<std::vector<at::Tensor>> keep;
  };

  std::thread thread_;
  int waiters_ = 0;               // guarded by mu_
  Clock::time_point last_waiter_;  // guarded by mu_: when a caller last started waiting
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool stop_ = false;
  bool ready_ = false;     // MPI_Init returned (guarded by mu_)
  bool finished_ = false;  // the engine thread is done (guarded by mu_)
  std::atomic<bool> sync_timed_out_{false};  // a run_sync call may still be blocked in MPI
  std::string init_error_;
  int thread_level_ = 0;
  bool we_initialized_ = false;
  // Engine-thread only:
  std::vector<MPI_Request> handles_;          // parallel arrays, one entry per request
  std::vector<Outstanding> outstanding_;
  std::vector<std::shared_ptr<int>> remaining_;  // requests left of the entry's operation
  size_t abandoned_ = 0;
};

}  // namespace longhaul::mpi
