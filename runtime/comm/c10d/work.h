// Internal: a longhaul Work over a c10d::Work. Collectives complete through the c10d future's
// callback (Gloo runs them on its worker threads); a c10d Work without a future (Gloo's send and
// recv) is waited for on a pool thread (p2p.h), without a timeout: a timed-out Gloo wait closes the
// connection. The caller's deadline is Work::wait()'s, reported as a TimeoutError naming the
// operation and the peer.
//
// A CUDA backend's (NCCL's) Work is done on the host once its kernel is queued on torch's
// communication stream; only its own wait(), called on the thread that uses the result, makes
// that thread's current stream wait for the kernel. So such a Work (stream_ordered) is complete on
// the host at once and calls torch's wait() in its finish step, on the waiting thread, before any
// other finish step reads the result. Its deadline on the device is the process group's own
// (torch's watchdog aborts a stuck NCCL communicator).
#pragma once

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "runtime/comm/work.h"

namespace longhaul::c10d_backend {

class C10dWork : public Work {
 public:
  // Use make(): the completion callback needs a weak reference to the Work.
  C10dWork(std::string what, std::chrono::milliseconds timeout, c10::intrusive_ptr<c10d::Work> work);
  static std::shared_ptr<C10dWork> make(std::string what, std::chrono::milliseconds timeout,
                                        c10::intrusive_ptr<c10d::Work> work, bool use_future,
                                        bool stream_ordered = false);

 private:
  void settle(const std::string& error);  // completes or fails once

  c10::intrusive_ptr<c10d::Work> work_;
  std::atomic<bool> settled_{false};
};

}  // namespace longhaul::c10d_backend
