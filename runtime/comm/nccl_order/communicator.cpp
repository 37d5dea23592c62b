#include "runtime/comm/nccl_order/communicator.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <deque>
#include <functional>
#include <thread>

#include "core/env_flag.h"
#include "core/errors.h"
#include "runtime/comm/nccl_order/wire.h"

namespace longhaul {
namespace {

using nccl_order::Desc;
using nccl_order::WireOp;

// One operation of a rank's stream: a group of point-to-point operations, or a collective.
struct Item {
  uint64_t seq = 0;
  WorkPtr user;  // what the caller waits on
  std::vector<WireOp> ops;
  std::function<WorkPtr()> start;  // a collective
  WorkPtr inner;
  bool issued = false;
};

class NcclOrderCommunicator;

// The communicators of one rank that come from one wrap(): the world and its splits, as NCCL
// communicators of one GPU. NCCL's kernels of two communicators in flight at once may deadlock
// (each waits on the GPU for peers that are themselves blocked on the other's kernel, or launched
// the two in another order), so a rank uses its communicators in turn: it posts on one only when
// every operation it posted on the others has completed. Used by one thread, as the members are.
struct Family {
  std::vector<std::weak_ptr<NcclOrderCommunicator>> members;
};

// The caller's handle: waiting on it drives the stream (nothing progresses on its own).
class StreamWork : public Work {
 public:
  StreamWork(std::string what, std::chrono::milliseconds timeout, std::weak_ptr<NcclOrderCommunicator> comm,
             uint64_t seq)
      : Work(std::move(what), timeout), comm_(std::move(comm)), seq_(seq) {}

 protected:
  void waiting(bool begin) override;
  void poll() override;

 private:
  std::weak_ptr<NcclOrderCommunicator> comm_;
  uint64_t seq_;
};

class NcclOrderCommunicator : public Communicator {
 public:
  NcclOrderCommunicator(CommPtr inner, std::shared_ptr<Family> family)
      : Communicator(CommOptions{inner->timeout(), true}), inner_(std::move(inner)), family_(std::move(family)) {}

  static CommPtr make(CommPtr inner, std::shared_ptr<Family> family) {
    auto comm = std::make_shared<NcclOrderCommunicator>(std::move(inner), family);
    family->members.push_back(comm);
    return comm;
  }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }

  std::shared_ptr<Communicator> split(int color, int key) override {
    drain("split");
    auto sub = inner_->split(color, key);
    return sub ? make(sub, family_) : nullptr;
  }

  // Drives the stream until item `seq` has completed or the deadline passes (then throws naming
  // the waited operation and the one the stream is blocked at).
  void drive_until(uint64_t seq, Clock::time_point deadline, const std::string& what) {
    if (open_ && open_->seq == seq) flush();
    for (int spins = 0;; ++spins) {
      pump();
      if (seq < next_incomplete()) return;
      if (Clock::now() > deadline) abort(blocked_message(what));
      backoff(spins);
    }
  }

  void poll_item() { pump(); }  // deferred operations stay deferred, as in the NCCL backend

 protected:
  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override { return defer(P2POp::send(t, peer, tag)); }
  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override { return defer(P2POp::recv(t, peer, tag)); }
  bool supports_device(const at::Device& d) const override { return d.is_cpu() || d.is_cuda() || d.is_meta(); }

  WorkPtr do_exchange(const std::vector<P2POp>& ops) override {
    flush();
    auto item = new_item(detail::str_cat("exchange of ", ops.size(), " operations"));
    for (const auto& op : ops) add_op(*item, op);
    return enqueue(item);
  }
  WorkPtr do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                        const std::vector<int64_t>& in_rows) override {
    at::Tensor o = out;
    return collective("all_to_all", [=, this]() mutable { return inner_->all_to_all(o, in, out_rows, in_rows); });
  }
  WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) override {
    at::Tensor o = out;
    return collective("all_gather", [=, this]() mutable { return inner_->all_gather(o, in, rows); });
  }
  WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                            ReduceOp op) override {
    at::Tensor o = out;
    return collective("reduce_scatter", [=, this]() mutable { return inner_->reduce_scatter(o, in, rows, op); });
  }
  WorkPtr do_all_reduce(at::Tensor& t, ReduceOp op) override {
    at::Tensor x = t;
    return collective("all_reduce", [=, this]() mutable { return inner_->all_reduce(x, op); });
  }
  WorkPtr do_broadcast(at::Tensor& t, int root) override {
    at::Tensor x = t;
    return collective(detail::str_cat("broadcast from ", root), [=, this]() mutable { return inner_->broadcast(x, root); });
  }
  WorkPtr do_barrier() override {
    return collective("barrier", [this] { return inner_->barrier(); });
  }

 private:
  std::shared_ptr<Item> new_item(const std::string& what) {
    auto item = std::make_shared<Item>();
    item->seq = next_seq_++;
    auto self = std::static_pointer_cast<NcclOrderCommunicator>(shared_from_this());
    item->user = std::make_shared<StreamWork>(
        describe(detail::str_cat(what, " (NCCL order, operation #", item->seq, " of this rank's stream)")), timeout(),
        self, item->seq);
    return item;
  }

  void add_op(Item& item, const P2POp& op) {
    WireOp w;
    w.op = op;
    w.desc = Desc{op.tag, static_cast<int64_t>(op.tensor.scalar_type()), op.tensor.numel(),
                  static_cast<int64_t>(item.seq)};
    item.ops.push_back(std::move(w));
  }

  WorkPtr defer(const P2POp& op) {
    if (!open_) open_ = new_item("standalone sends and receives");
    add_op(*open_, op);
    return open_->user;
  }

  void flush() {
    if (!open_) return;
    auto item = std::move(open_);
    open_.reset();
    enqueue(item);
  }

  WorkPtr collective(const std::string& what, std::function<WorkPtr()> start) {
    flush();
    auto item = new_item(what);
    item->start = std::move(start);
    return enqueue(item);
  }

  // The head of this communicator's stream, or its deferred group: what it has not completed.
  const Item* unfinished() const { return !stream_.empty() ? stream_.front().get() : open_.get(); }

  // Refuses to post `item` while another communicator of this rank has an unfinished operation:
  // the item's Work fails and the posting call throws, with both operations named.
  void check_in_turn(const Item& item) {
    auto& members = family_->members;
    std::erase_if(members, [](const auto& m) { return m.expired(); });
    for (const auto& m : members) {
      auto other = m.lock();
      const Item* busy = other && other.get() != this ? other->unfinished() : nullptr;
      if (!busy) continue;
      const std::string message = detail::str_cat(
          item.user->what(), " is posted while ", busy->user->what(), " on another communicator of this rank (",
          other->size(), " ranks) has not completed; NCCL kernels of two communicators in flight at once can "
          "deadlock, so a rank uses its communicators in turn: wait for that operation first");
      item.user->fail(message);
      throw CommError(message);
    }
  }

  WorkPtr enqueue(const std::shared_ptr<Item>& item) {
    check_in_turn(*item);
    if (!broken_.empty()) {
      item->user->fail("the communicator is unusable after an earlier failure: " + broken_);
    } else {
      stream_.push_back(item);
      pump();
    }
    return item->user;
  }

  uint64_t next_incomplete() const { return stream_.empty() ? next_seq_ : stream_.front()->seq; }

  // Issues the head of the stream when it is free and advances it as far as it completes.
  void pump() {
    while (!stream_.empty()) {
      auto item = stream_.front();
      std::string error;
      try {
        if (!item->issued) issue(*item);
        if (!progress(*item)) return;
      } catch (const std::exception& e) {
        error = e.what();
      }
      stream_.pop_front();
      if (error.empty()) {
        item->user->complete_part();
        continue;
      }
      item->user->fail(error);
      broken_ = error;  // as an NCCL error aborts the communicator
      for (auto& rest : stream_) rest->user->fail("the communicator is unusable after an earlier failure: " + error);
      stream_.clear();
    }
  }

  void issue(Item& item) {
    item.issued = true;
    if (item.start) {
      item.inner = item.start();
      return;
    }
    for (auto& w : item.ops) post(*inner_, w);
  }

  // True when every part of the item has completed; throws when one failed.
  bool progress(Item& item) {
    if (item.start) return item.inner->done();
    return nccl_order::progress(*inner_, rank(), item.ops);
  }

  // Before split: every operation posted so far completes (the new communicator starts clean).
  void drain(const char* why) {
    flush();
    if (!stream_.empty()) drive_until(stream_.back()->seq, Clock::now() + timeout(), describe(why));
  }

  // A passed deadline aborts the communicator, as the NCCL backend does: the waiter gets the
  // TimeoutError, every other pending operation fails, and nothing can be posted afterwards.
  [[noreturn]] void abort(const std::string& message) {
    broken_ = message;
    for (auto& item : stream_) item->user->fail("aborted after a deadline: " + message);
    stream_.clear();
    throw TimeoutError(message);
  }

  std::string blocked_message(const std::string& what) const {
    std::string msg = detail::str_cat(what, " did not complete within ", timeout().count() / 1e3, " s (NCCL order)");
    if (stream_.empty()) return msg;
    const Item& head = *stream_.front();
    msg += detail::str_cat(": this rank's NCCL stream is blocked at operation #", head.seq, " (", head.user->what(), ")");
    const char* sep = ", which waits for its ";
    for (const auto& w : head.ops)
      if (!w.done) {
        msg += detail::str_cat(sep, w.op.kind == P2POp::Kind::Send ? "send to" : "recv from", " rank ", w.op.peer,
                               " (tag ", w.desc.tag, ", ", w.desc.numel, " elements)");
        sep = " and its ";
      }
    return msg + "; every later operation of this rank waits behind it, as on one CUDA stream";
  }

  // Yields for the first few milliseconds (the peer is usually one message behind, and a yield
  // leaves the core to the ranks sharing it; sleeping after 64 polls made the 4-rank Python suite
  // 25 % slower on 2 cores), then sleeps, so a long wait for a stopped peer costs no core.
  static void backoff(int spins) {
    if (spins < 4096) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(spins < 8192 ? 20 : 200));
    }
  }

  CommPtr inner_;
  std::deque<std::shared_ptr<Item>> stream_;
  std::shared_ptr<Item> open_;  // deferred standalone operations
  uint64_t next_seq_ = 1;
  std::string broken_;
  std::shared_ptr<Family> family_;
};

void StreamWork::waiting(bool begin) {
  if (!begin) return;
  if (auto c = comm_.lock()) c->drive_until(seq_, deadline(), what());
}

void StreamWork::poll() {
  if (auto c = comm_.lock()) c->poll_item();
}

}  // namespace

bool nccl_order::requested_by_env() { return env_flag("LONGHAUL_NCCL_ORDER"); }

CommPtr nccl_order::wrap(CommPtr inner) {
  LH_CHECK(inner != nullptr, "nccl_order::wrap: the inner communicator is null");
  return NcclOrderCommunicator::make(std::move(inner), std::make_shared<Family>());
}

}  // namespace longhaul
