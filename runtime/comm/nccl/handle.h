// Handle: one NCCL communicator with its CUDA stream, shared by the Communicator and its in-flight
// Works (which may outlive it). All NCCL calls on the comm are made under mutex(); abort() may come
// from any thread (a deadline, an asynchronous error) and makes every later use a CommError.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/comm/work.h"

namespace longhaul::nccl {

// Waits until `rc`, the result of a call on `comm`, has settled. In non-blocking mode calls return
// ncclInProgress and the communicator's state is polled. On an error or a passed deadline the
// comm is aborted and CommError/TimeoutError thrown, naming `what`.
void wait_settled(ncclComm_t comm, ncclResult_t rc, Clock::time_point deadline, const std::string& what);

class Handle {
 public:
  // Takes ownership of `comm` (initialised); creates a dedicated stream on `device`.
  Handle(ncclComm_t comm, int device, bool nonblocking);
  // Lets issued work finish (bounded), then finalises and destroys the comm, or aborts it.
  ~Handle();
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  std::mutex& mutex() { return mu_; }
  ncclComm_t comm() const { return comm_; }
  int device() const { return device_; }
  bool nonblocking() const { return nonblocking_; }
  cudaStream_t stream() const { return stream_; }

  // Caller holds mutex(). wait_settled on this comm; a failure leaves the handle aborted.
  void settle(ncclResult_t rc, Clock::time_point deadline, const std::string& what);
  // Caller holds mutex(). Empty when healthy, else NCCL's asynchronous error (the comm is then
  // aborted).
  std::string check_async_error();
  // Aborts the comm (idempotent): kernels stop, resources go; every later operation fails.
  void abort(const std::string& reason);
  void abort_locked(const std::string& reason);  // caller holds mutex()
  // abort() unless another thread holds mutex() (it is inside an NCCL call, which ends by its own
  // deadline): false then, and the caller tries again later instead of blocking.
  bool try_abort(const std::string& reason);
  bool aborted() const { return aborted_.load(); }
  std::string abort_reason();
  // Throws CommError naming `what` when the comm was aborted.
  void check_usable(const std::string& what);

  // How long the destructor lets issued work finish before it aborts instead.
  std::chrono::milliseconds teardown_timeout{std::chrono::seconds(30)};

 private:
  ncclComm_t comm_;
  int device_;
  bool nonblocking_;
  cudaStream_t stream_ = nullptr;
  std::mutex mu_;
  std::atomic<bool> aborted_{false};
  std::string abort_reason_;
};

// A handle on `comm` of nranks processes (ncclCommInitRankConfig, bounded by `deadline`).
std::shared_ptr<Handle> init_handle(const ncclUniqueId& id, int rank, int size, int device, bool nonblocking,
                                    Clock::time_point deadline, const std::string& what);

}  // namespace longhaul::nccl
