#include "runtime/comm/nccl/communicator.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <numeric>

#include "runtime/comm/nccl/bootstrap.h"
#include "runtime/comm/nccl/check.h"
#include "runtime/comm/nccl/datatypes.h"
#include "runtime/comm/nccl/handle.h"
#include "runtime/comm/nccl/work.h"
#include "core/errors.h"
#include "core/offsets.h"

namespace longhaul {
namespace nccl {
namespace {

using EventPtr = std::shared_ptr<at::cuda::CUDAEvent>;
// The NCCL calls of one group: (comm, communication stream).
using Calls = std::function<void(ncclComm_t, cudaStream_t)>;

// Bytes (and elements) of one row: everything but the first dimension.
int64_t row_elems(const at::Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}
int64_t row_bytes(const at::Tensor& t) { return row_elems(t) * static_cast<int64_t>(t.element_size()); }

char* bytes_of(const at::Tensor& t) { return static_cast<char*>(t.data_ptr()); }

bool all_equal(const std::vector<int64_t>& v) {
  return std::adjacent_find(v.begin(), v.end(), std::not_equal_to<int64_t>()) == v.end();
}

EventPtr new_event() { return std::make_shared<at::cuda::CUDAEvent>(cudaEventDisableTiming); }

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Handle> handle, int rank, int size, CommOptions options)
      : Communicator(options), handle_(std::move(handle)), rank_(rank), size_(size), device_(handle_->device()) {}

  ~NcclCommunicator() override {
    std::lock_guard<std::mutex> lock(pending_mu_);
    for (auto& p : pending_)
      p.work->abandon("the communicator was destroyed before this deferred operation was posted");
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  // Not ncclCommSplit (on NCCL 2.28 it returned no comm in non-blocking mode and left the parent
  // busy): (color, key, rank) and the unique ids travel over this communicator, then each color
  // joins like a world (ncclCommInitRankConfig, bounded by the deadline). Every rank takes part in
  // both exchanges, a negative color too.
  std::shared_ptr<Communicator> split(int color, int key) override {
    const std::string what = describe(detail::str_cat("split(color ", color, ", key ", key, ")"));
    const auto deadline = Clock::now() + timeout();
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    const auto on_device = [&](at::ScalarType t) { return at::TensorOptions().dtype(t).device(at::kCUDA, device_); };
    // 1. Every rank's (color, key).
    at::Tensor mine = at::tensor({int64_t(color < 0 ? -1 : color), int64_t(key), int64_t(rank_)}, at::kLong)
                          .view({1, 3}).to(on_device(at::kLong));
    at::Tensor all = at::empty({size_, 3}, on_device(at::kLong));
    all_gather(all, mine)->wait();
    all = all.cpu();
    const int64_t* a = all.data_ptr<int64_t>();
    // Members of this color in the new rank order: (key, parent rank).
    std::vector<std::pair<int64_t, int>> members;
    int leader = -1;
    for (int j = 0; j < size_; ++j) {
      if (color < 0 || a[3 * j] != color) continue;
      members.emplace_back(a[3 * j + 1], j);
      if (leader < 0) leader = j;  // the lowest parent rank of the color
    }
    // 2. Each color's leader makes the unique id: [status byte][id] per rank, status 1 = valid.
    constexpr int64_t kIdBytes = static_cast<int64_t>(sizeof(ncclUniqueId));
    at::Tensor id_buf = at::zeros({1, 1 + kIdBytes}, at::kByte);
    std::string error;
    if (leader == rank_) {
      try {
        ncclUniqueId id;
        LH_CHECK_NCCL(ncclGetUniqueId(&id));
        std::memcpy(id_buf.data_ptr<uint8_t>() + 1, &id, sizeof(id));
        id_buf.data_ptr<uint8_t>()[0] = 1;
      } catch (const std::exception& e) {
        error = e.what();  // still takes part in the exchange so the others fail at once too
      }
    }
    at::Tensor ids = at::empty({size_, 1 + kIdBytes}, on_device(at::kByte));
    all_gather(ids, id_buf.to(on_device(at::kByte)))->wait();
    if (!error.empty()) throw CommError(detail::str_cat(what, ": ", error));
    if (color < 0) return nullptr;
    ids = ids.cpu();
    const uint8_t* chosen = ids.data_ptr<uint8_t>() + static_cast<int64_t>(leader) * (1 + kIdBytes);
    if (chosen[0] != 1)
      throw CommError(detail::str_cat(what, ": parent rank ", leader,
                                      " (leader of this color) could not create an NCCL unique id (see its log)"));
    ncclUniqueId id;
    std::memcpy(&id, chosen + 1, sizeof(id));
    std::stable_sort(members.begin(), members.end());
    const int sub_size = static_cast<int>(members.size());
    const int sub_rank = static_cast<int>(
        std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.second == rank_; }) -
        members.begin());
    auto h = init_handle(id, sub_rank, sub_size, device_, handle_->nonblocking(), deadline,
                         detail::str_cat(what, " (rank ", sub_rank, " of ", sub_size, ")"));
    CommOptions opts;
    opts.timeout = timeout();
    return std::make_shared<NcclCommunicator>(h, sub_rank, sub_size, opts);
  }

  // Posts the deferred standalone sends and receives as one NCCL group.
  void flush() {
    std::lock_guard<std::mutex> posting(post_mu_);
    flush_locked();
  }

  // flush() with post_mu_ held. That mutex keeps one thread's flush and launch together: a
  // collective another thread posts cannot come between them (posting order is NCCL's matching
  // order, and every rank must post the same one).
  void flush_locked() {
    std::vector<Pending> ops;
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      ops.swap(pending_);
    }
    // One that failed while deferred (done() past its deadline) is not posted: its caller has the error.
    std::erase_if(ops, [](const Pending& p) { return p.work->settled(); });
    if (ops.empty()) return;
    std::stable_sort(ops.begin(), ops.end(), [](const Pending& a, const Pending& b) { return a.tag < b.tag; });
    std::vector<EventPtr> after;
    for (const auto& p : ops) after.push_back(p.ready);
    try {
      EventPtr done = enqueue(detail::str_cat("group of ", ops.size(), " deferred sends/receives"), &after,
                              [&](ncclComm_t c, cudaStream_t s) {
                                for (const auto& p : ops) {
                                  if (p.send) LH_CHECK_NCCL(ncclSend(bytes_of(p.tensor), nbytes(p.tensor), ncclUint8, p.peer, c, s));
                                  else LH_CHECK_NCCL(ncclRecv(bytes_of(p.tensor), nbytes(p.tensor), ncclUint8, p.peer, c, s));
                                }
                              });
      for (auto& p : ops) {
        p.work->posted(done);
        watch(p.work);
      }
    } catch (const std::exception& e) {
      for (auto& p : ops) p.work->abandon(e.what());
      throw;
    }
  }

 protected:
  bool supports_device(const at::Device& device) const override { return device.is_cuda(); }

  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override { return defer(true, t, peer, tag); }
  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override { return defer(false, t, peer, tag); }

  WorkPtr do_exchange(const std::vector<P2POp>& ops) override {
    std::vector<P2POp> sorted;
    std::vector<at::Tensor> keep;
    std::string peers;
    for (const auto& op : ops) {
      const bool send = op.kind == P2POp::Kind::Send;
      check_device(op.tensor, send ? "exchange(send)" : "exchange(recv)");
      peers += detail::str_cat(peers.empty() ? "" : ", ", send ? "send to peer " : "recv from peer ", op.peer,
                               " (tag ", op.tag, ", ", nbytes(op.tensor), " bytes)");
      if (nbytes(op.tensor) == 0) continue;  // both sides skip it: the byte counts must agree
      sorted.push_back(op);
      keep.push_back(op.tensor);
    }
    std::stable_sort(sorted.begin(), sorted.end(), [](const P2POp& a, const P2POp& b) { return a.tag < b.tag; });
    return launch(detail::str_cat("exchange (", peers, ")"), keep, [sorted](ncclComm_t c, cudaStream_t s) {
      for (const auto& op : sorted) {
        if (op.kind == P2POp::Kind::Send)
          LH_CHECK_NCCL(ncclSend(bytes_of(op.tensor), nbytes(op.tensor), ncclUint8, op.peer, c, s));
        else
          LH_CHECK_NCCL(ncclRecv(bytes_of(op.tensor), nbytes(op.tensor), ncclUint8, op.peer, c, s));
      }
    });
  }

  WorkPtr do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                        const std::vector<int64_t>& in_rows) override {
    check_device(in, "all_to_all");
    check_device(out, "all_to_all");
    const int64_t rb = row_bytes(in);
    const auto ioff = offsets_of(in_rows), ooff = offsets_of(out_rows);
    // NCCL has no all-to-all-v: one group of sends and receives (to itself too).
    return launch("all_to_all", {out, in}, [=, this](ncclComm_t c, cudaStream_t s) {
      for (int j = 0; j < size_; ++j) {
        if (in_rows[j] * rb > 0)
          LH_CHECK_NCCL(ncclSend(bytes_of(in) + ioff[j] * rb, in_rows[j] * rb, ncclUint8, j, c, s));
        if (out_rows[j] * rb > 0)
          LH_CHECK_NCCL(ncclRecv(bytes_of(out) + ooff[j] * rb, out_rows[j] * rb, ncclUint8, j, c, s));
      }
    });
  }

  WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) override {
    check_device(in, "all_gather");
    check_device(out, "all_gather");
    const int64_t rb = row_bytes(in);
    if (all_equal(rows)) {
      return launch("all_gather", {out, in}, [=](ncclComm_t c, cudaStream_t s) {
        if (rows[0] * rb > 0) LH_CHECK_NCCL(ncclAllGather(bytes_of(in), bytes_of(out), rows[0] * rb, ncclUint8, c, s));
      });
    }
    // Uneven: one broadcast per contributing rank, grouped.
    const auto off = offsets_of(rows);
    return launch("all_gather (uneven rows)", {out, in}, [=, this](ncclComm_t c, cudaStream_t s) {
      for (int j = 0; j < size_; ++j) {
        if (rows[j] * rb == 0) continue;
        char* dst = bytes_of(out) + off[j] * rb;
        LH_CHECK_NCCL(ncclBroadcast(j == rank_ ? bytes_of(in) : dst, dst, rows[j] * rb, ncclUint8, j, c, s));
      }
    });
  }

  WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                            ReduceOp op) override {
    check_device(in, "reduce_scatter");
    check_device(out, "reduce_scatter");
    const std::string what = detail::str_cat("reduce_scatter(", to_string(op), ")");
    const ncclDataType_t type = element_type(in.scalar_type(), describe(what));
    const ncclRedOp_t nop = reduce_op(op);
    const int64_t re = row_elems(in), es = in.element_size();
    if (all_equal(rows)) {
      return launch(what, {out, in}, [=](ncclComm_t c, cudaStream_t s) {
        if (rows[0] * re > 0) LH_CHECK_NCCL(ncclReduceScatter(in.data_ptr(), out.data_ptr(), rows[0] * re, type, nop, c, s));
      });
    }
    // Uneven: one reduce per destination rank, grouped (NCCL has no reduce-scatter-v).
    const auto off = offsets_of(rows);
    return launch(what + " (uneven rows)", {out, in}, [=, this](ncclComm_t c, cudaStream_t s) {
      for (int j = 0; j < size_; ++j) {
        if (rows[j] * re == 0) continue;
        char* src = bytes_of(in) + off[j] * re * es;
        LH_CHECK_NCCL(ncclReduce(src, j == rank_ ? out.data_ptr() : src, rows[j] * re, type, nop, j, c, s));
      }
    });
  }

  WorkPtr do_all_reduce(at::Tensor& t, ReduceOp op) override {
    check_device(t, "all_reduce");
    const std::string what = detail::str_cat("all_reduce(", to_string(op), ", ", nbytes(t), " bytes)");
    const ncclDataType_t type = element_type(t.scalar_type(), describe(what));
    const ncclRedOp_t nop = reduce_op(op);
    return launch(what, {t}, [=](ncclComm_t c, cudaStream_t s) {
      if (t.numel() > 0) LH_CHECK_NCCL(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), type, nop, c, s));
    });
  }

  WorkPtr do_broadcast(at::Tensor& t, int root) override {
    check_device(t, "broadcast");
    return launch(detail::str_cat("broadcast from ", root, " (", nbytes(t), " bytes)"), {t},
                  [=](ncclComm_t c, cudaStream_t s) {
                    if (nbytes(t) > 0) LH_CHECK_NCCL(ncclBroadcast(t.data_ptr(), t.data_ptr(), nbytes(t), ncclUint8, root, c, s));
                  });
  }

  WorkPtr do_barrier() override {
    if (!barrier_.defined()) {
      c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
      barrier_ = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
    }
    at::Tensor b = barrier_;
    return launch("barrier", {b}, [b](ncclComm_t c, cudaStream_t s) {
      LH_CHECK_NCCL(ncclAllReduce(b.data_ptr(), b.data_ptr(), 1, ncclFloat32, ncclSum, c, s));
    });
  }

 private:
  struct Pending {
    bool send;
    at::Tensor tensor;
    int peer, tag;
    std::shared_ptr<NcclWork> work;
    EventPtr ready;  // the caller's stream when the operation was posted
  };

  void check_device(const at::Tensor& t, const char* op) const {
    if (t.device().index() != device_)
      throw InvalidArgument(detail::str_cat(describe(op), ": tensor on ", t.device(), " but the communicator uses cuda:",
                                            device_, " (one device per NCCL rank)"));
  }

  c10::cuda::CUDAStream comm_stream() const {
    return c10::cuda::getStreamFromExternal(handle_->stream(), static_cast<c10::DeviceIndex>(device_));
  }
  c10::cuda::CUDAStream caller_stream() const {
    return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_));
  }

  WorkPtr defer(bool send, const at::Tensor& t, int peer, int tag) {
    const char* op = send ? "send" : "recv";
    check_device(t, op);
    const std::string what = detail::str_cat(describe(send ? "send to peer " : "recv from peer "), peer, " (tag ", tag,
                                             ", ", nbytes(t), " bytes)");
    if (nbytes(t) == 0) return Work::completed(what);
    handle_->check_usable(what);
    auto work = std::make_shared<NcclWork>(what, timeout(), handle_, std::vector<at::Tensor>{t});
    std::weak_ptr<Communicator> self = weak_from_this();
    work->set_on_wait([self] {
      if (auto s = self.lock()) static_cast<NcclCommunicator*>(s.get())->flush();
    });
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    EventPtr ready = new_event();
    ready->record(caller_stream());
    std::lock_guard<std::mutex> lock(pending_mu_);
    pending_.push_back({send, t, peer, tag, work, ready});
    return work;
  }

  // Posts the deferred operations first (posting order is NCCL's matching order), then this one.
  WorkPtr launch(const std::string& what, std::vector<at::Tensor> keep, const Calls& calls) {
    std::lock_guard<std::mutex> posting(post_mu_);
    flush_locked();
    auto work = std::make_shared<NcclWork>(describe(what), timeout(), handle_, std::move(keep));
    work->posted(enqueue(what, nullptr, calls));
    watch(work);
    return work;
  }

  // One NCCL group on the communication stream, after `after` (or the caller's current stream);
  // returns the event recorded after it.
  EventPtr enqueue(const std::string& what, const std::vector<EventPtr>* after, const Calls& calls) {
    std::lock_guard<std::mutex> lock(handle_->mutex());
    handle_->check_usable(describe(what));
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    const c10::cuda::CUDAStream stream = comm_stream();
    if (after) {
      for (const auto& e : *after) e->block(stream);
    } else {
      at::cuda::CUDAEvent ready(cudaEventDisableTiming);
      ready.record(caller_stream());
      ready.block(stream);
    }
    LH_CHECK_NCCL(ncclGroupStart());
    try {
      calls(handle_->comm(), stream.stream());
    } catch (...) {
      // Close the group and settle the comm (non-blocking: ncclGroupEnd may return ncclInProgress;
      // the next call would otherwise meet "Attempt to use communicator before the previous
      // operation returned ncclSuccess"). The error above is the one to report; a comm that does
      // not settle cleanly is aborted by settle().
      try {
        handle_->settle(ncclGroupEnd(), Clock::now() + timeout(), describe(what));
      } catch (...) {
      }
      throw;
    }
    handle_->settle(ncclGroupEnd(), Clock::now() + timeout(), describe(what));
    EventPtr done = new_event();
    done->record(stream);
    return done;
  }

  std::shared_ptr<Handle> handle_;
  int rank_, size_, device_;
  std::mutex post_mu_;     // held while posting (flush, launch): one thread's posts stay in order
  std::mutex pending_mu_;  // guards pending_ (defer() adds without posting)
  std::vector<Pending> pending_;
  at::Tensor barrier_;
};

}  // namespace

CommPtr make_communicator(std::shared_ptr<Handle> handle, int rank, int size, CommOptions options) {
  return std::make_shared<NcclCommunicator>(std::move(handle), rank, size, options);
}

}  // namespace nccl
}  // namespace longhaul
