// NcclWork: the Work of an NCCL operation — complete when the CUDA event recorded after it on the
// communication stream has passed. A waiter polls the event itself (no wake-up latency); the
// Watcher thread polls works nobody waits on, so done() turns true and buffers are released.
// Both check NCCL's asynchronous errors; a passed deadline aborts the communicator. A deferred
// operation's deadline counts from when it is posted; one never posted fails at its deadline
// when done() is asked (it would otherwise stay not-done for ever).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAEvent.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/comm/nccl/handle.h"
#include "runtime/comm/work.h"

namespace longhaul::nccl {

class NcclWork : public Work {
 public:
  // keep: tensors that must live until the operation is complete.
  NcclWork(std::string what, std::chrono::milliseconds timeout, std::shared_ptr<Handle> handle,
           std::vector<at::Tensor> keep);

  // The operation was enqueued; `done` is recorded after it on the communication stream.
  void posted(std::shared_ptr<at::cuda::CUDAEvent> done);
  // Called by a waiter before it polls: posts the operation if the communicator deferred it
  // (standalone sends and receives wait to be grouped).
  void set_on_wait(std::function<void()> f) { on_wait_ = std::move(f); }

  // Checks for completion, errors and (when `enforce_deadline`) the deadline; true once settled.
  bool poll(bool enforce_deadline);
  // The operation could not be posted (or its communicator went away first): fails the work.
  void abandon(const std::string& reason);
  // Nothing else holds this work's communicator handle: releasing the work destroys it (which
  // may wait for the peers, so not on the watcher thread).
  bool holds_last_handle() const { return handle_.use_count() == 1; }
  // Completed or failed (e.g. deferred past its deadline): a deferred one is then not posted.
  bool settled() {
    std::lock_guard<std::mutex> lock(poll_mu_);
    return settled_;
  }

 protected:
  void waiting(bool begin) override;
  // done(): queries a posted operation's event; fails one deferred past its deadline and never posted.
  void poll() override;

 private:
  void settle_ok();
  void settle_error(const std::string& reason);

  std::shared_ptr<Handle> handle_;
  std::vector<at::Tensor> keep_;
  std::function<void()> on_wait_;
  std::mutex poll_mu_;
  std::shared_ptr<at::cuda::CUDAEvent> done_;  // null until posted
  bool settled_ = false;
  std::atomic<bool> has_waiter_{false};
  Clock::time_point last_error_check_{};
};

// Registers a posted work with the background poller (one thread per process, started lazily).
void watch(std::shared_ptr<NcclWork> work);

}  // namespace longhaul::nccl
