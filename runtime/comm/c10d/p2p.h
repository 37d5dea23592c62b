// Internal: point-to-point over a c10d backend, made safe and deadline-friendly for Gloo.
//  - Every message is preceded by a one-number header (its byte count) on a tag of its own, and
//    the receiver posts the data receive only once the header has arrived: a message larger than
//    the receive is drained into scratch and reported as a CommError naming both sizes (Gloo
//    itself would abort the receiving process). Data receives on one (peer, tag) are posted in
//    the order they were issued, so messages stay FIFO per (peer, tag).
//  - Completion is waited for on helper threads (a pool that grows with the waits in flight),
//    never with a timeout: a timed-out Gloo wait closes the connection for good. The caller's
//    deadline is the longhaul Work's; an abandoned receive is completed by a late message.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/comm/work.h"

namespace longhaul::c10d_backend {

// Tag of the header of a message on `tag` (user and reserved tags stay below it).
constexpr int kHeaderTagOffset = 1 << 30;

// Runs fn on a pool thread (one more when every thread is busy); fn must not throw.
void run_blocking(std::function<void()> fn);

class SizedP2P {
 public:
  explicit SizedP2P(c10::intrusive_ptr<c10d::Backend> backend) : backend_(std::move(backend)) {}
  WorkPtr send(const at::Tensor& t, int peer, int tag, const std::string& what, std::chrono::milliseconds timeout);
  WorkPtr recv(const at::Tensor& t, int peer, int tag, const std::string& what, std::chrono::milliseconds timeout);

 private:
  struct Channel {  // the receives of one (peer, tag), posted in issue order
    std::mutex mu;
    std::condition_variable cv;
    uint64_t next_ticket = 0, next_post = 0;
  };
  std::shared_ptr<Channel> channel(int peer, int tag);

  c10::intrusive_ptr<c10d::Backend> backend_;
  std::mutex mu_;
  std::map<std::pair<int, int>, std::shared_ptr<Channel>> channels_;
};

}  // namespace longhaul::c10d_backend
