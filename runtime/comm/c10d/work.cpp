#include "runtime/comm/c10d/work.h"

#include <ATen/core/ivalue.h>

#include "runtime/comm/c10d/p2p.h"
#include "core/errors.h"

namespace longhaul::c10d_backend {

C10dWork::C10dWork(std::string what, std::chrono::milliseconds timeout, c10::intrusive_ptr<c10d::Work> work)
    : Work(std::move(what), timeout, 1), work_(std::move(work)) {}

std::shared_ptr<C10dWork> C10dWork::make(std::string what, std::chrono::milliseconds timeout,
                                         c10::intrusive_ptr<c10d::Work> work, bool use_future, bool stream_ordered) {
  auto w = std::make_shared<C10dWork>(std::move(what), timeout, std::move(work));
  if (stream_ordered) {
    // Queued is all the host waits for: torch's wait() on the thread that uses the result orders
    // its current stream after the kernel (on a pool thread it would stall that thread's stream,
    // the default one, at once, and with it the caller's compute).
    w->then([cw = w->work_, op = w->what()] {
      try {
        cw->wait();
      } catch (const c10::Error& e) {
        throw CommError(detail::str_cat(op, " failed: ", e.what_without_backtrace()));
      }
    });
    w->settle(std::string());
    return w;
  }
  if (use_future) {
    c10::intrusive_ptr<c10::ivalue::Future> future;
    try {
      future = w->work_->getFuture();
    } catch (const c10::Error&) {
      future = nullptr;  // this Work has no future: a pool thread waits for it
    }
    if (future) {
      std::weak_ptr<C10dWork> weak = w;
      future->addCallback([weak](c10::ivalue::Future& f) {
        auto self = weak.lock();
        if (!self) return;  // abandoned: nobody waits for it
        self->settle(f.hasError() ? f.tryRetrieveErrorMessage() : std::string());
      });
      return w;
    }
  }
  std::weak_ptr<C10dWork> weak = w;
  run_blocking([weak, cw = w->work_] {
    std::string error;
    try {
      cw->wait();
    } catch (const c10::Error& e) {
      error = e.what_without_backtrace();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (auto self = weak.lock()) self->settle(error);
  });
  return w;
}

void C10dWork::settle(const std::string& error) {
  if (settled_.exchange(true)) return;
  if (error.empty())
    complete_part();
  else
    fail(error);
}

}  // namespace longhaul::c10d_backend
