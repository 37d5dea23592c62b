#include "runtime/comm/local/communicator.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>

#include "runtime/comm/checked/communicator.h"
#include "runtime/comm/nccl_order/communicator.h"
#include "core/errors.h"

namespace longhaul {
namespace {

// A message between thread-ranks. A device copy carries an event recorded on the sender's stream
// after the copy was queued: the receiver's stream waits on it, so neither thread blocks.
struct Message {
  at::Tensor data;
  std::shared_ptr<c10::Event> ready;  // null for CPU tensors
};

// CPU tensors, and shape-only (meta) ones of the simulator: no streams, no events.
bool host_side(const at::Device& d) { return d.is_cpu() || d.is_meta(); }

Message copy_for_send(const at::Tensor& t) {
  Message m{t.clone(), nullptr};  // copy on send: the caller may reuse its buffer at once
  if (!host_side(t.device())) {
    c10::impl::VirtualGuardImpl impl(t.device().type());
    m.ready = std::make_shared<c10::Event>(t.device().type());
    m.ready->record(impl.getStream(t.device()));
  }
  return m;
}

struct PendingRecv {
  at::Tensor dst;
  WorkPtr work;
};

// Mailboxes shared by the thread-ranks of one local communicator.
class Hub {
 public:
  explicit Hub(int size) : size_(size) {}
  int size() const { return size_; }

  void post_send(int src, int dst, int tag, const at::Tensor& t) {
    Channel& ch = channel(src, dst, tag);
    std::unique_lock<std::mutex> lock(mu_);
    drop_expired(ch);
    if (!ch.recvs.empty() && host_side(t.device()) && host_side(ch.recvs.front().dst.device())) {
      PendingRecv r = std::move(ch.recvs.front());
      ch.recvs.pop_front();
      lock.unlock();
      deliver(r, Message{t, nullptr}, src, tag);  // straight into the waiting receiver's buffer
      return;
    }
    lock.unlock();
    Message copy = copy_for_send(t);
    lock.lock();
    drop_expired(ch);
    if (!ch.recvs.empty()) {
      PendingRecv r = std::move(ch.recvs.front());
      ch.recvs.pop_front();
      lock.unlock();
      deliver(r, copy, src, tag);
      return;
    }
    ch.messages.push_back(std::move(copy));
  }

  // Fails every pending receive and every later one (sub-communicators too) with `why`: a rank
  // that ended with an error can no longer send, so its peers learn it now, not at their deadline.
  void abort(const std::string& why) {
    std::vector<PendingRecv> pending;
    std::vector<std::shared_ptr<Hub>> subs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!aborted_.empty()) return;
      aborted_ = why;
      for (auto& [key, ch] : channels_)
        for (auto& r : ch.recvs) pending.push_back(std::move(r));
      for (auto& [key, ch] : channels_) ch.recvs.clear();
      for (auto& [key, h] : splits_) subs.push_back(h);
    }
    for (auto& r : pending) r.work->fail(why);
    for (auto& h : subs) h->abort(why);
  }

  void post_recv(int dst, int src, int tag, const at::Tensor& t, const WorkPtr& work) {
    Channel& ch = channel(src, dst, tag);
    std::unique_lock<std::mutex> lock(mu_);
    if (!aborted_.empty() && ch.messages.empty()) {
      lock.unlock();
      work->fail(aborted_);
      return;
    }
    if (!ch.messages.empty()) {
      Message msg = std::move(ch.messages.front());
      ch.messages.pop_front();
      lock.unlock();
      PendingRecv r{t, work};
      deliver(r, msg, src, tag);
      return;
    }
    ch.recvs.push_back({t, work});
  }

  // The communicator of one color of the seq-th split, shared by all its members.
  std::shared_ptr<Hub> sub_hub(uint64_t seq, int color, int size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& h = splits_[{seq, color}];
    if (!h) {
      h = std::make_shared<Hub>(size);
      h->aborted_ = aborted_;
    }
    return h;
  }

 private:
  struct Channel {
    std::deque<Message> messages;
    std::deque<PendingRecv> recvs;
  };

  Channel& channel(int src, int dst, int tag) {
    std::lock_guard<std::mutex> lock(mu_);
    return channels_[{src, dst, tag}];  // std::map nodes are stable
  }

  // Receives whose deadline has passed (their wait has thrown, or will): a message must not land in
  // a buffer its owner gave up on, and must stay for the next receive. Called with mu_ held.
  static void drop_expired(Channel& ch) {
    const auto now = Clock::now();
    while (!ch.recvs.empty() && ch.recvs.front().work->deadline() < now) {
      ch.recvs.front().work->fail("its deadline passed before the message arrived");
      ch.recvs.pop_front();
    }
  }

  static void deliver(PendingRecv& r, const Message& m, int src, int tag) {
    const at::Tensor& msg = m.data;
    if (msg.scalar_type() != r.dst.scalar_type() || msg.numel() != r.dst.numel()) {
      r.work->fail(detail::str_cat("message from rank ", src, " (tag ", tag, ") holds ", msg.numel(), " ",
                                   msg.scalar_type(), " elements, the receive expects ", r.dst.numel(), " ",
                                   r.dst.scalar_type(), " elements"));
      return;
    }
    if (host_side(r.dst.device()) && host_side(msg.device())) {
      r.dst.view(msg.sizes()).copy_(msg);
    } else {
      // Device copies run on the receiving thread's stream, when it waits. The message was
      // allocated on the sender's stream: recording the receiver's stream on it keeps the caching
      // allocator from handing its memory back to the sender before this copy has run.
      at::Tensor dst = r.dst;
      r.work->set_finish([dst, m]() mutable {
        const at::Tensor& msg = m.data;
        if (m.ready) {
          c10::impl::VirtualGuardImpl impl(msg.device().type());
          m.ready->block(impl.getStream(msg.device()));  // the sender's copy is done first
        }
        dst.view(msg.sizes()).copy_(msg);
        if (msg.device().is_cpu()) return;
        c10::impl::VirtualGuardImpl impl(msg.device().type());
        impl.recordDataPtrOnStream(msg.storage().data_ptr(), impl.getStream(msg.device()));
      });
    }
    r.work->complete_part();
  }

  int size_;
  std::mutex mu_;
  std::string aborted_;  // why every receive fails (a rank of run_ranks ended with an error)
  std::map<std::tuple<int, int, int>, Channel> channels_;
  std::map<std::pair<uint64_t, int>, std::shared_ptr<Hub>> splits_;
};

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<Hub> hub, int rank, CommOptions options)
      : Communicator(options), hub_(std::move(hub)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return hub_->size(); }
  std::string backend() const override { return "local"; }

  std::shared_ptr<Communicator> split(int color, int key) override {
    at::Tensor mine = at::tensor({int64_t(color), int64_t(key)}, at::kLong).view({1, 2});
    at::Tensor all = at::empty({size(), 2}, at::kLong);
    all_gather(all, mine)->wait();
    const uint64_t seq = split_seq_++;
    if (color < 0) return nullptr;
    std::vector<std::pair<int64_t, int>> members;  // (key, old rank)
    auto a = all.accessor<int64_t, 2>();
    for (int r = 0; r < size(); ++r)
      if (a[r][0] == color) members.emplace_back(a[r][1], r);
    std::sort(members.begin(), members.end());
    int new_rank = 0;
    while (members[new_rank].second != rank_) ++new_rank;
    auto sub = hub_->sub_hub(seq, color, static_cast<int>(members.size()));
    CommOptions opts;
    opts.timeout = timeout();
    return std::make_shared<LocalCommunicator>(sub, new_rank, opts);
  }

 protected:
  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override {
    hub_->post_send(rank_, peer, tag, t);
    return Work::completed(describe(detail::str_cat("send to peer ", peer)));
  }

  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override {
    auto work = std::make_shared<Work>(
        describe(detail::str_cat("recv from peer ", peer, " (tag ", tag, ", ", nbytes(t), " bytes)")), timeout());
    hub_->post_recv(rank_, peer, tag, t, work);
    return work;
  }

  bool supports_device(const at::Device& device) const override {
    return device.is_cpu() || device.is_cuda() || device.is_meta();  // meta: the simulator
  }

 private:
  std::shared_ptr<Hub> hub_;
  int rank_;
  uint64_t split_seq_ = 0;
};

}  // namespace

namespace {

std::vector<CommPtr> create_world_on(const std::shared_ptr<Hub>& hub, CommOptions options) {
  std::vector<CommPtr> comms;
  for (int r = 0; r < hub->size(); ++r) {
    CommPtr c = std::make_shared<LocalCommunicator>(hub, r, options);
    if (options.nccl_order) c = nccl_order::wrap(std::move(c));
    if (options.check_collectives) c = checked::wrap(std::move(c));
    comms.push_back(std::move(c));
  }
  return comms;
}

}  // namespace

std::vector<CommPtr> local::create_world(int size, CommOptions options) {
  LH_CHECK(size >= 1, "local world size must be at least 1, got ", size);
  return create_world_on(std::make_shared<Hub>(size), options);
}

void local::run_ranks(int size, const std::function<void(Communicator&)>& fn, CommOptions options) {
  LH_CHECK(size >= 1, "local world size must be at least 1, got ", size);
  auto hub = std::make_shared<Hub>(size);
  auto comms = create_world_on(hub, options);
  const int saved_threads = at::get_num_threads();
  at::set_num_threads(1);  // P thread-ranks share the cores; each runs single-threaded
  // The first error to escape a rank is the cause: it aborts the hub, so the peers' waits fail at
  // once naming it, and it is the one rethrown.
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(*comms[r]);
      } catch (...) {
        std::string what = "an exception that is not a std::exception";
        try {
          throw;
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!first) first = std::current_exception();
        }
        hub->abort(detail::str_cat("rank ", r, " of the local world ended with an error: ", what));
      }
    });
  }
  for (auto& t : threads) t.join();
  at::set_num_threads(saved_threads);
  if (first) std::rethrow_exception(first);
}

void local::enter_device_rank(const c10::Device& device) {
  if (device.is_cpu()) return;
  c10::impl::VirtualGuardImpl impl(device.type());
  impl.setDevice(device);
  impl.exchangeStream(impl.getStreamFromGlobalPool(device));
  // Autograd runs CUDA backward nodes on one worker thread per device, shared by every thread that
  // calls backward(): two thread-ranks' attention backwards, which exchange messages, would wait
  // on each other there forever. Without multithreading this thread runs its own backward (each
  // node still on the stream its forward used).
  c10::AutogradState::get_tls_state().set_multithreading_enabled(false);
}

}  // namespace longhaul
