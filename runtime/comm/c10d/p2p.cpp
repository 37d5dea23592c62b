#include "runtime/comm/c10d/p2p.h"

#include <ATen/ATen.h>

#include <deque>
#include <thread>

#include "runtime/comm/comm.h"
#include "core/errors.h"

namespace longhaul::c10d_backend {
namespace {

std::string message_of(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

// Threads that block in c10d waits. Leaked on purpose: waits may outlive static destruction.
class Pool {
 public:
  void run(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(fn));
    if (static_cast<int>(tasks_.size()) > idle_) {  // every idle thread has a task already
      ++idle_;  // the new thread counts as idle until it takes a task
      std::thread([this] { loop(); }).detach();
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !tasks_.empty(); });
      auto fn = std::move(tasks_.front());
      tasks_.pop_front();
      --idle_;
      lock.unlock();
      fn();
      lock.lock();
      ++idle_;
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  int idle_ = 0;
};

// Completes `work` (one part) when the c10d work completes, or fails it.
void finish_when_done(const std::shared_ptr<Work>& work, c10::intrusive_ptr<c10d::Work> cw) {
  std::weak_ptr<Work> weak = work;
  run_blocking([weak, cw] {
    std::string error;
    try {
      cw->wait();
    } catch (const std::exception& e) {
      error = message_of(e);
    }
    if (auto w = weak.lock()) error.empty() ? w->complete_part() : w->fail(error);
  });
}

}  // namespace

void run_blocking(std::function<void()> fn) {
  static Pool* pool = new Pool();
  pool->run(std::move(fn));
}

std::shared_ptr<SizedP2P::Channel> SizedP2P::channel(int peer, int tag) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& ch = channels_[{peer, tag}];
  if (!ch) ch = std::make_shared<Channel>();
  return ch;
}

WorkPtr SizedP2P::send(const at::Tensor& t, int peer, int tag, const std::string& what,
                       std::chrono::milliseconds timeout) {
  std::vector<at::Tensor> header{at::full({1}, nbytes(t), at::kLong)};
  std::vector<at::Tensor> data{t};
  c10::intrusive_ptr<c10d::Work> hw, dw;
  try {
    hw = backend_->send(header, peer, tag + kHeaderTagOffset);
    dw = backend_->send(data, peer, tag);
  } catch (const c10::Error& e) {
    throw CommError(detail::str_cat(what, " could not start: ", e.what_without_backtrace()));
  }
  auto work = std::make_shared<Work>(what, timeout, 2);
  finish_when_done(work, hw);
  finish_when_done(work, dw);
  return work;
}

WorkPtr SizedP2P::recv(const at::Tensor& t, int peer, int tag, const std::string& what,
                       std::chrono::milliseconds timeout) {
  std::vector<at::Tensor> header{at::empty({1}, at::kLong)};
  c10::intrusive_ptr<c10d::Work> hw;
  try {
    hw = backend_->recv(header, peer, tag + kHeaderTagOffset);
  } catch (const c10::Error& e) {
    throw CommError(detail::str_cat(what, " could not start: ", e.what_without_backtrace()));
  }
  auto ch = channel(peer, tag);
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(ch->mu);
    ticket = ch->next_ticket++;
  }
  auto work = std::make_shared<Work>(what, timeout, 1);
  std::weak_ptr<Work> weak = work;
  auto backend = backend_;
  at::Tensor h = header[0];
  run_blocking([weak, backend, ch, ticket, hw, h, t, peer, tag] {
    std::string error;
    bool posted = false;
    auto post_in_turn = [&](const std::function<void()>& post) {
      std::unique_lock<std::mutex> lock(ch->mu);
      ch->cv.wait(lock, [&] { return ch->next_post == ticket; });
      try {
        post();
      } catch (...) {
        ++ch->next_post;
        posted = true;
        ch->cv.notify_all();
        throw;
      }
      ++ch->next_post;
      posted = true;
      ch->cv.notify_all();
    };
    try {
      hw->wait();
      const int64_t sent = h.item<int64_t>(), want = nbytes(t);
      // A larger message is drained into scratch; a smaller one lands in t's first bytes.
      std::vector<at::Tensor> dst{sent == want ? t : at::empty({sent}, at::kByte)};
      c10::intrusive_ptr<c10d::Work> dw;
      post_in_turn([&] { dw = backend->recv(dst, peer, tag); });
      dw->wait();
      if (sent != want)
        error = detail::str_cat("the sender sent ", sent, " bytes but this receive expects ", want,
                                " (a shape or dtype mismatch between the ranks)");
    } catch (const std::exception& e) {
      error = message_of(e);
      if (!posted) post_in_turn([] {});  // let later receives on this (peer, tag) go on
    }
    if (auto w = weak.lock()) error.empty() ? w->complete_part() : w->fail(error);
  });
  return work;
}

}  // namespace longhaul::c10d_backend
