#include "runtime/comm/c10d/communicator.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "runtime/comm/c10d/gloo.h"
#include "runtime/comm/c10d/p2p.h"
#include "runtime/comm/c10d/store.h"
#include "runtime/comm/c10d/work.h"
#include "core/errors.h"
#include "runtime/comm/checked/communicator.h"
#include "runtime/comm/routed/communicator.h"
#include "core/offsets.h"

namespace longhaul {
namespace {

using c10d_backend::C10dWork;

std::atomic<bool> g_destroy_off_thread{false};

class C10dCommunicator;
// The communicators over groups handed in (Python's), the worlds longhaul made over a store
// (create_world) and the groups it made beside or below them, for release_wrapped().
std::mutex g_wrapped_mu;
std::vector<std::weak_ptr<C10dCommunicator>> g_wrapped;
void remember_for_release(const std::shared_ptr<C10dCommunicator>& comm) {
  std::lock_guard<std::mutex> lock(g_wrapped_mu);
  std::erase_if(g_wrapped, [](const auto& w) { return w.expired(); });
  g_wrapped.push_back(comm);
}

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case ReduceOp::Max: return c10d::ReduceOp(c10d::ReduceOp::MAX);
    case ReduceOp::Min: return c10d::ReduceOp(c10d::ReduceOp::MIN);
  }
  return c10d::ReduceOp(c10d::ReduceOp::SUM);
}

bool all_equal(const std::vector<int64_t>& v) {
  return std::adjacent_find(v.begin(), v.end(), std::not_equal_to<>()) == v.end();
}

class C10dCommunicator : public Communicator {
 public:
  // bind_address: where this rank's Gloo groups listen (make_gloo), for the groups split() makes.
  C10dCommunicator(c10::intrusive_ptr<c10d::Backend> backend, c10::intrusive_ptr<c10d::Store> store,
                   std::string prefix, CommOptions options, std::string bind_address = {})
      : Communicator(options),
        backend_(std::move(backend)),
        store_(std::move(store)),
        prefix_(std::move(prefix)),
        bind_address_(std::move(bind_address)),
        name_(backend_->getBackendName()),
        rank_(backend_->getRank()),
        size_(backend_->getSize()) {
    // Gloo aborts the process on an oversized message: its messages carry their size (p2p.h).
    if (name_ == "gloo") sized_ = std::make_unique<c10d_backend::SizedP2P>(backend_);
  }

  // Under Python the process group goes on a thread of its own: ~ProcessGroupGloo joins its
  // workers, and a worker may be dropping a Python tensor, which needs the GIL that a Python caller
  // dropping this communicator holds (torch binds its own groups with a GIL-free destructor for the
  // same reason). At interpreter exit release_wrapped() has let go of them already.
  // Only a group this communicator holds last is destroyed here: dropping a reference to a group
  // torch still holds (a wrapper of the caller's group) is inline, so that no thread of ours is
  // left holding it when torch destroys the group and the interpreter exits.
  ~C10dCommunicator() override {
    sized_.reset();  // holds the backend too: the count below is then this communicator's alone
    if (!backend_ || !g_destroy_off_thread.load() || backend_.use_count() > 1) return;
    std::thread([backend = std::move(backend_)]() mutable { backend.reset(); }).detach();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "c10d-" + name_; }

  // Drops this communicator's hold on its process group (release_wrapped, at interpreter exit);
  // later operations fail.
  void release() {
    released_ = true;
    sized_.reset();
    backend_.reset();
    store_.reset();
  }

  std::shared_ptr<Communicator> split(int color, int key) override {
    const std::string op = detail::str_cat("split(color ", color, ", key ", key, ")");
    alive(op);
    if (!store_)
      throw Unsupported(describe(op) + ": this communicator wraps a process group without a store; pass the "
                                       "group's store to c10d_backend::wrap");
    if (name_ != "gloo")
      throw Unsupported(describe(op) + ": only Gloo groups are split by longhaul (the " + name_ +
                        " group would need its own split); split in Python and wrap each group");
    // Everyone learns everyone's (color, key), then the members build a group of their own.
    at::Tensor mine = at::tensor({int64_t(color), int64_t(key)}, at::kLong);
    at::Tensor all = at::empty({2 * int64_t(size_)}, at::kLong);
    all_gather(all, mine)->wait();
    const int64_t* ck = all.data_ptr<int64_t>();
    // The store counts this rank's splits of every wrapper of this store (several wrappers of one
    // torch group share its keys): the same on every rank, since split is collective.
    const int64_t seq = store_->add(detail::str_cat(prefix_, "/splits/rank", rank_), 1);
    if (color < 0) return nullptr;
    std::vector<int> members;
    for (int j = 0; j < size_; ++j)
      if (ck[2 * j] == color) members.push_back(j);
    std::stable_sort(members.begin(), members.end(), [&](int a, int b) { return ck[2 * a + 1] < ck[2 * b + 1]; });
    const int sub_rank = int(std::find(members.begin(), members.end(), rank_) - members.begin());
    const int sub_size = int(members.size());
    const std::string prefix = detail::str_cat(prefix_, "/split", seq, "/color", color);
    auto sub_store = c10::make_intrusive<c10d::PrefixStore>(prefix, store_);
    auto backend = c10d_backend::make_gloo(sub_store, sub_rank, sub_size, timeout(), describe(op), bind_address_);
    CommOptions opts;
    opts.timeout = timeout();
    auto sub = std::make_shared<C10dCommunicator>(backend, store_, prefix, opts, bind_address_);
    remember_for_release(sub);
    return sub;
  }

 protected:
  bool supports_device(const at::Device& device) const override {
    if (name_ == "gloo") return device.is_cpu();
    if (name_ == "nccl") return device.is_cuda();
    return device.is_cpu() || device.is_cuda();
  }

  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override {
    const std::string op = detail::str_cat("send to peer ", peer, " (tag ", tag, ", ", nbytes(t), " bytes)");
    alive(op);
    if (peer == rank_) return send_to_self(t, tag, describe(op));
    if (sized_) return sized_->send(t, peer, tag, describe(op), timeout());
    std::vector<at::Tensor> v{t};
    return run(op, false, [&] { return backend_->send(v, peer, tag); });
  }

  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override {
    const std::string op = detail::str_cat("recv from peer ", peer, " (tag ", tag, ", ", nbytes(t), " bytes)");
    alive(op);
    if (peer == rank_) return recv_from_self(t, tag, describe(op));
    if (sized_) return sized_->recv(t, peer, tag, describe(op), timeout());
    std::vector<at::Tensor> v{t};
    return run(op, false, [&] { return backend_->recv(v, peer, tag); });
  }

  // Over NCCL an exchange is one coalesced launch (ncclGroupStart/End): NCCL runs separate sends
  // and receives one after another on the device, so two ranks that both post their send first
  // (every step of a ring) would wait on each other. Messages to this rank itself are copies
  // (c10d groups have no connection to self); Gloo takes the composed exchange.
  WorkPtr do_exchange(const std::vector<P2POp>& ops) override {
    alive("exchange");
    if (name_ == "gloo" || ops.empty() || !backend_->supportsCoalescing()) return Communicator::do_exchange(ops);
    // Everything that could fail is checked before the group opens: a failure inside it would still
    // launch the operations queued so far, which the peers' groups would no longer match. Messages
    // move as bytes (any dtype NCCL lacks moves too); empty ones are skipped on both sides.
    int64_t bytes = 0;
    std::vector<std::pair<const P2POp*, at::Tensor>> remote;
    for (const P2POp& op : ops) {
      if (op.tensor.device() != ops.front().tensor.device())
        throw InvalidArgument(describe(detail::str_cat("exchange: tensors on ", ops.front().tensor.device(), " and ",
                                                       op.tensor.device(), "; one exchange moves one device's tensors")));
      bytes += nbytes(op.tensor);
      if (op.peer != rank_ && nbytes(op.tensor) > 0) remote.emplace_back(&op, op.tensor.reshape(-1).view(at::kByte));
    }
    const std::string what = detail::str_cat("exchange of ", ops.size(), " sends and receives (", bytes, " bytes)");
    WorkPtr work = remote.empty() ? Work::completed(describe(what)) : run(what, false, [&] {
      backend_->startCoalescing();
      try {
        for (const auto& [op, t] : remote) {
          std::vector<at::Tensor> v{t};
          if (op->kind == P2POp::Kind::Send)
            backend_->send(v, op->peer, op->tag);
          else
            backend_->recv(v, op->peer, op->tag);
        }
      } catch (...) {
        backend_->endCoalescing();  // leaves the backend out of coalescing mode; the error is reported
        throw;
      }
      return backend_->endCoalescing();
    });
    for (const P2POp& op : ops) {
      if (op.peer != rank_) continue;
      const std::string self = describe(detail::str_cat("exchange with self (tag ", op.tag, ")"));
      work->add_child(op.kind == P2POp::Kind::Send ? send_to_self(op.tensor, op.tag, self)
                                                   : recv_from_self(op.tensor, op.tag, self));
    }
    return work;
  }

  WorkPtr do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                        const std::vector<int64_t>& in_rows) override {
    at::Tensor i = in;
    std::vector<int64_t> o_split = out_rows, i_split = in_rows;
    return run(detail::str_cat("all_to_all (", nbytes(in), " bytes out, ", nbytes(out), " in)"), true,
               [&] { return backend_->alltoall_base(out, i, o_split, i_split, c10d::AllToAllOptions()); });
  }

  WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) override {
    const std::string what = detail::str_cat("all_gather (", nbytes(out), " bytes)");
    at::Tensor i = in;
    if (all_equal(rows)) return run(what, true, [&] { return backend_->_allgather_base(out, i, c10d::AllgatherOptions()); });
    // Per-rank counts: gather equal parts padded to the largest, then keep each rank's rows.
    const int64_t most = *std::max_element(rows.begin(), rows.end());
    std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
    shape[0] = most;
    at::Tensor padded = at::zeros(shape, in.options());
    padded.narrow(0, 0, in.size(0)).copy_(in);
    shape[0] = most * size_;
    at::Tensor gathered = at::empty(shape, in.options());
    auto work = run(what + ", padded to " + std::to_string(most) + " rows per rank", true,
                    [&] { return backend_->_allgather_base(gathered, padded, c10d::AllgatherOptions()); });
    const auto off = offsets_of(rows);
    work->then([out, gathered, rows, off, most, padded]() mutable {
      for (size_t j = 0; j < rows.size(); ++j)
        out.narrow(0, off[j], rows[j]).copy_(gathered.narrow(0, int64_t(j) * most, rows[j]));
    });
    return work;
  }

  WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                            ReduceOp op) override {
    const std::string what = detail::str_cat("reduce_scatter(", to_string(op), ", ", nbytes(in), " bytes)");
    c10d::ReduceScatterOptions o;
    o.reduceOp = to_c10d(op);
    if (all_equal(rows)) {
      at::Tensor i = in;
      return run(what, true, [&] { return backend_->_reduce_scatter_base(out, i, o); });
    }
    // Per-rank counts: torch's list form, which each backend implements for parts of different
    // sizes (Gloo natively, NCCL as grouped reduces). On Gloo it took 0.65-0.87x the time of an
    // all-reduce of the whole tensor, which this path used before (34-268 MB, 2 and 4 ranks).
    std::vector<at::Tensor> outputs{out};
    std::vector<std::vector<at::Tensor>> inputs{in.split_with_sizes(rows)};
    return run(what + ", per-rank counts", true, [&] { return backend_->reduce_scatter(outputs, inputs, o); });
  }

  WorkPtr do_all_reduce(at::Tensor& t, ReduceOp op) override {
    c10d::AllreduceOptions o;
    o.reduceOp = to_c10d(op);
    std::vector<at::Tensor> v{t};
    return run(detail::str_cat("all_reduce(", to_string(op), ", ", nbytes(t), " bytes)"), true,
               [&] { return backend_->allreduce(v, o); });
  }

  WorkPtr do_broadcast(at::Tensor& t, int root) override {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.rootTensor = 0;
    std::vector<at::Tensor> v{t};
    return run(detail::str_cat("broadcast from ", root, " (", nbytes(t), " bytes)"), true,
               [&] { return backend_->broadcast(v, o); });
  }

  WorkPtr do_barrier() override {
    return run("barrier", true, [&] { return backend_->barrier(c10d::BarrierOptions()); });
  }

 private:
  // Messages to this rank itself (c10d groups have no connection to self): a send copies its
  // tensor, so it completes at once; FIFO per tag.
  WorkPtr send_to_self(const at::Tensor& t, int tag, const std::string& what) {
    at::Tensor copy = t.clone();
    std::lock_guard<std::mutex> lock(self_mu_);
    auto& waiting = self_recvs_[tag];
    if (!waiting.empty()) {
      auto [dst, work] = waiting.front();
      waiting.pop_front();
      deliver(copy, dst, *work);
    } else {
      self_sent_[tag].push_back(copy);
    }
    return Work::completed(what);
  }
  WorkPtr recv_from_self(const at::Tensor& t, int tag, const std::string& what) {
    auto work = std::make_shared<Work>(what, timeout(), 1);
    std::lock_guard<std::mutex> lock(self_mu_);
    auto& sent = self_sent_[tag];
    if (!sent.empty()) {
      at::Tensor msg = sent.front();
      sent.pop_front();
      deliver(msg, t, *work);
    } else {
      self_recvs_[tag].emplace_back(t, work);
    }
    return work;
  }
  static void deliver(const at::Tensor& msg, const at::Tensor& dst, Work& work) {
    if (nbytes(msg) != nbytes(dst)) {
      work.fail(detail::str_cat("the sender sent ", nbytes(msg), " bytes but this receive expects ", nbytes(dst)));
      return;
    }
    if (dst.numel() > 0) dst.reshape(-1).view(at::kByte).copy_(msg.reshape(-1).view(at::kByte));  // t is contiguous
    work.complete_part();
  }

  // Starts a c10d operation; errors raised while posting become CommError naming the operation.
  template <typename F>
  std::shared_ptr<Work> run(const std::string& op, bool collective, F&& start) {
    alive(op);
    const std::string what = describe(op);
    c10::intrusive_ptr<c10d::Work> w;
    try {
      w = start();
    } catch (const c10::Error& e) {
      throw CommError(detail::str_cat(what, " could not start: ", e.what_without_backtrace()));
    }
    // No Work: the operation ran in the caller's stream order already (a coalesced block torch
    // finished synchronously), nothing is left to wait for.
    if (!w) return Work::completed(what);
    return C10dWork::make(what, timeout(), std::move(w), collective, /*stream_ordered=*/name_ != "gloo");
  }

  void alive(const std::string& op) const {
    if (released_)
      throw CommError(describe(op) + ": the process group was released when the interpreter exited "
                                     "(longhaul lets go of its groups then, so that they are torn down while the "
                                     "interpreter is whole)");
  }

  std::atomic<bool> released_{false};
  c10::intrusive_ptr<c10d::Backend> backend_;
  c10::intrusive_ptr<c10d::Store> store_;
  std::string prefix_;
  std::string bind_address_;
  std::string name_;
  int rank_, size_;
  std::unique_ptr<c10d_backend::SizedP2P> sized_;
  std::mutex self_mu_;
  std::map<int, std::deque<at::Tensor>> self_sent_;
  std::map<int, std::deque<std::pair<at::Tensor, std::shared_ptr<Work>>>> self_recvs_;
};

// Gloo aborts the process on a collective message larger than its receive and leaves a shorter
// one's rows unwritten, so collectives over Gloo are first compared across ranks
// (runtime/comm/checked): ranks that disagree on counts, dtype or op get the same InvalidArgument
// instead. One small blocking all_gather per collective, on the CPU. Not over NCCL, where it would
// be a device round trip per collective (NCCL-order mode proves those schedules on the CPU).
CommPtr checked_if_gloo(std::shared_ptr<C10dCommunicator> comm) {
  if (comm->backend() == "c10d-gloo") return checked::wrap(std::move(comm));
  return comm;
}

}  // namespace

CommPtr c10d_backend::create_world(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                   CommOptions options, const std::string& bind_address) {
  const std::string what = detail::str_cat("backend c10d-gloo: joining the world (rank ", rank, " of ", size, ")");
  if (!store) throw InvalidArgument(what + ": the store is null");
  if (size < 1 || rank < 0 || rank >= size)
    throw InvalidArgument(detail::str_cat(what, ": rank ", rank, " is outside [0, ", size, ")"));
  c10d_backend::join(*store, rank, size, options.timeout, what);
  const std::string prefix = "longhaul/world";
  auto backend = c10d_backend::make_gloo(c10::make_intrusive<c10d::PrefixStore>(prefix, store), rank, size,
                                         options.timeout, what, bind_address);
  auto comm = std::make_shared<C10dCommunicator>(backend, store, prefix, options, bind_address);
  // Released at interpreter exit too: dropped later, during the interpreter's teardown, its Gloo
  // group went down on a detached thread while the process exited (std::terminate, seen once in
  // train_gpt.py across two torchrun nodes).
  remember_for_release(comm);
  return checked_if_gloo(std::move(comm));
}

CommPtr c10d_backend::create_world_tcp(const std::string& host, int port, int rank, int size, CommOptions options,
                                       const TcpStoreOptions& store_options) {
  c10::intrusive_ptr<c10d::Store> store = c10d_backend::connect_tcp_store(
      host, port, rank, size, options.timeout, rank == 0 && store_options.rank0_serves);
  if (!store_options.prefix.empty()) store = c10::make_intrusive<c10d::PrefixStore>(store_options.prefix, store);
  // Gloo listens on the network that leads to the store: the host name of a node need not resolve.
  return c10d_backend::create_world(store, rank, size, options, c10d_backend::local_address_toward(host));
}

CommPtr c10d_backend::wrap(const c10::intrusive_ptr<c10d::Backend>& backend,
                           const c10::intrusive_ptr<c10d::Store>& store, CommOptions options) {
  if (!backend) throw InvalidArgument("backend c10d: the process group backend to wrap is null");
  auto comm = std::make_shared<C10dCommunicator>(backend, store, "longhaul/wrapped", options);
  remember_for_release(comm);
  return checked_if_gloo(std::move(comm));
}

void c10d_backend::destroy_groups_off_thread() { g_destroy_off_thread = true; }

void c10d_backend::release_wrapped() {
  std::vector<std::weak_ptr<C10dCommunicator>> all;
  {
    std::lock_guard<std::mutex> lock(g_wrapped_mu);
    all.swap(g_wrapped);
  }
  for (auto& w : all)
    if (auto c = w.lock()) c->release();
}

namespace {

// The Gloo groups made beside torch groups that have no CPU backend ("nccl" alone), one per group
// for its lifetime: made once, by every rank at the same call (the first wrap of that group), so
// a later wrap on one rank never makes a group its peers do not.
std::mutex g_companions_mu;
std::vector<std::pair<c10::weak_intrusive_ptr<c10d::ProcessGroup>, CommPtr>> g_companions;

CommPtr gloo_companion(const c10::intrusive_ptr<c10d::ProcessGroup>& group, CommOptions options) {
  std::lock_guard<std::mutex> lock(g_companions_mu);
  std::erase_if(g_companions, [](const auto& c) { return c.first.expired(); });
  for (const auto& [weak, comm] : g_companions)
    if (weak.lock() == group) return comm;
  const int rank = group->getRank(), size = group->getSize();
  const c10::intrusive_ptr<c10d::Store> store = group->getStore();
  const std::string what = detail::str_cat("backend c10d: a Gloo group for the CPU tensors of a torch process group "
                                           "without a CPU backend (rank ", rank, " of ", size, ")");
  if (!store) throw InvalidArgument(what + ": the process group has no store to meet on");
  // Its keys: this rank's count of such groups on this store (the same on every rank).
  const int64_t seq = store->add(detail::str_cat("longhaul/companion/rank", rank), 1);
  const std::string prefix = detail::str_cat("longhaul/companion", seq);
  const char* master = std::getenv("MASTER_ADDR");  // Gloo listens on the route to the job's master
  auto backend = c10d_backend::make_gloo(c10::make_intrusive<c10d::PrefixStore>(prefix, store), rank, size,
                                         options.timeout, what,
                                         master ? c10d_backend::local_address_toward(master) : std::string());
  auto comm = std::make_shared<C10dCommunicator>(backend, store, prefix, options);
  remember_for_release(comm);  // released at interpreter exit with the rest
  CommPtr checked = checked_if_gloo(std::move(comm));
  g_companions.emplace_back(c10::weak_intrusive_ptr<c10d::ProcessGroup>(group), checked);
  return checked;
}

// The group's own CPU backend, else the Gloo companion.
CommPtr host_comm_of(const c10::intrusive_ptr<c10d::ProcessGroup>& group, CommOptions options) {
  c10::intrusive_ptr<c10d::Backend> cpu;
  try {
    cpu = group->getBackend(c10::DeviceType::CPU);
  } catch (const c10::Error&) {
    return gloo_companion(group, options);  // e.g. init_process_group("nccl"): CUDA only
  }
  return c10d_backend::wrap(cpu, group->getStore(), options);
}

}  // namespace

CommPtr c10d_backend::wrap(const c10::intrusive_ptr<c10d::ProcessGroup>& group, c10::DeviceType device,
                           CommOptions options) {
  if (!group) throw InvalidArgument("backend c10d: the process group to wrap is null");
  if (device == c10::DeviceType::CPU) return host_comm_of(group, options);
  c10::intrusive_ptr<c10d::Backend> backend;
  try {
    backend = group->getBackend(device);
  } catch (const c10::Error& e) {
    throw InvalidArgument(detail::str_cat("backend c10d: the process group has no backend for ",
                                          c10::DeviceTypeName(device), " tensors: ", e.what_without_backtrace()));
  }
  // CPU tensors (the agreement before each attention call, plans, metadata) take the host side, so
  // they never wait for the device's stream.
  return routed::wrap(host_comm_of(group, options), c10d_backend::wrap(backend, group->getStore(), options));
}

}  // namespace longhaul
