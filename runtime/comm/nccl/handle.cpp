#include "runtime/comm/nccl/handle.h"

#include <c10/cuda/CUDAGuard.h>

#include <iomanip>
#include <sstream>
#include <thread>

#include "runtime/comm/nccl/check.h"

namespace longhaul::nccl {
namespace {
std::string seconds(Clock::duration d) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << std::chrono::duration<double>(d).count() << " s";
  return os.str();
}
}  // namespace

void wait_settled(ncclComm_t comm, ncclResult_t rc, Clock::time_point deadline, const std::string& what) {
  const auto start = Clock::now();
  while (rc == ncclInProgress) {
    if (Clock::now() >= deadline) {
      ncclCommAbort(comm);
      throw TimeoutError(detail::str_cat(what, " did not complete within its deadline (elapsed ",
                                         seconds(Clock::now() - start),
                                         "): a peer may be missing, stopped or not calling the matching operation; "
                                         "the NCCL communicator was aborted"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    ncclResult_t state = ncclSuccess;
    const ncclResult_t q = ncclCommGetAsyncError(comm, &state);
    rc = q != ncclSuccess ? q : state;
  }
  if (rc != ncclSuccess) {
    const std::string text = error_text(rc, comm);
    ncclCommAbort(comm);
    throw CommError(detail::str_cat(what, " failed: ", text, "; the NCCL communicator was aborted"));
  }
}

Handle::Handle(ncclComm_t comm, int device, bool nonblocking)
    : comm_(comm), device_(device), nonblocking_(nonblocking) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  int least = 0, greatest = 0;
  LH_CHECK_CUDA(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // High priority: communication kernels should not queue behind long compute kernels.
  LH_CHECK_CUDA(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
}

Handle::~Handle() {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  if (!aborted_.load()) {
    // Issued operations must end before the comm goes; a stuck one (dead peer) means abort.
    const auto deadline = Clock::now() + teardown_timeout;
    cudaError_t q;
    while ((q = cudaStreamQuery(stream_)) == cudaErrorNotReady && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    (void)cudaGetLastError();
    bool clean = q == cudaSuccess;
    if (clean) {
      try {
        wait_settled(comm_, ncclCommFinalize(comm_), Clock::now() + teardown_timeout, "ncclCommFinalize");
      } catch (const std::exception&) {
        clean = false;  // wait_settled aborted the comm already
        aborted_ = true;
      }
      if (clean) ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  if (stream_) cudaStreamDestroy(stream_);  // returns at once; pending work still completes
}

void Handle::settle(ncclResult_t rc, Clock::time_point deadline, const std::string& what) {
  try {
    wait_settled(comm_, rc, deadline, what);
  } catch (const std::exception& e) {
    if (!aborted_.load()) abort_reason_ = e.what();  // before the flag: check_usable reads it unlocked
    aborted_ = true;                                 // wait_settled called ncclCommAbort
    throw;
  }
}

std::string Handle::check_async_error() {
  if (aborted_.load()) return abort_reason_;
  ncclResult_t state = ncclSuccess;
  ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
  if (q == ncclSuccess && (state == ncclSuccess || state == ncclInProgress)) return {};
  const std::string text = detail::str_cat("NCCL reported an asynchronous error: ",
                                           error_text(q != ncclSuccess ? q : state, comm_));
  abort_locked(text);
  return text;
}

void Handle::abort(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  abort_locked(reason);
}

bool Handle::try_abort(const std::string& reason) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  abort_locked(reason);
  return true;
}

void Handle::abort_locked(const std::string& reason) {
  if (aborted_.load()) return;
  abort_reason_ = reason;
  aborted_ = true;
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  ncclCommAbort(comm_);
}

std::string Handle::abort_reason() {
  std::lock_guard<std::mutex> lock(mu_);
  return abort_reason_;
}

void Handle::check_usable(const std::string& what) {
  if (aborted_.load())
    throw CommError(detail::str_cat(what, ": the NCCL communicator was aborted earlier (", abort_reason_,
                                    "); create a new one"));
}

std::shared_ptr<Handle> init_handle(const ncclUniqueId& id, int rank, int size, int device, bool nonblocking,
                                    Clock::time_point deadline, const std::string& what) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = nonblocking ? 0 : 1;
  ncclComm_t comm = nullptr;
  const ncclResult_t rc = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  if (rc != ncclSuccess && rc != ncclInProgress) {
    const std::string text = error_text(rc, comm);
    if (comm != nullptr) ncclCommAbort(comm);  // a half-made comm: do not leak it
    throw CommError(detail::str_cat(what, ": ncclCommInitRankConfig(rank ", rank, " of ", size, ", device ", device,
                                    ") failed: ", text));
  }
  wait_settled(comm, rc, deadline, detail::str_cat(what, ": ncclCommInitRankConfig(rank ", rank, " of ", size, ")"));
  try {
    return std::make_shared<Handle>(comm, device, nonblocking);
  } catch (...) {
    ncclCommAbort(comm);  // the stream could not be made: do not leak the comm
    throw;
  }
}

}  // namespace longhaul::nccl
