// The Communicator interface (docs/runtime.md): one object per group of ranks, on at::Tensor.
// Every operation is non-blocking and returns a Work; wait() has a deadline (CommOptions::timeout).
// Tensors must be contiguous; counts are in rows (the first dimension); a buffer handed to an
// operation may not be touched until its Work is done. Backends live in sub-folders (mpi/, local/)
// and override what they do natively; the rest is composed here from point-to-point operations.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/work.h"

namespace longhaul {

enum class ReduceOp { Sum, Max, Min };
const char* to_string(ReduceOp op);

// A deadline given in seconds (`what` names where it came from, e.g. "--timeout"): inf, or anything
// past ~3 years, is none (capped so that now + deadline cannot overflow the steady clock's int64
// nanoseconds); 0, negative or NaN is an InvalidArgument naming `what`.
std::chrono::milliseconds timeout_of_seconds(double seconds, const std::string& what);
// A deadline given as a duration: 0 or negative is an InvalidArgument naming `what`; past
// kLongestTimeout (milliseconds::max() included) it is capped there.
std::chrono::milliseconds checked_timeout(std::chrono::milliseconds t, const std::string& what);

struct CommOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // deadline of every wait
  // NCCL's rules instead of the backend's (matching in posting order per pair, one stream per
  // rank): see runtime/comm/nccl_order/communicator.h. Honoured by local::create_world; longhaul::init
  // reads it from LONGHAUL_NCCL_ORDER=1.
  bool nccl_order = false;
  // Every collective compares what each rank calls first (runtime/comm/checked/communicator.h).
  // Honoured by local::create_world; longhaul::init reads it from LONGHAUL_CHECK_COLLECTIVES=1.
  bool check_collectives = false;
};

// One send or receive of a grouped exchange.
struct P2POp {
  enum class Kind { Send, Recv };
  Kind kind;
  at::Tensor tensor;
  int peer;
  int tag = 0;
  static P2POp send(at::Tensor t, int peer, int tag = 0) { return {Kind::Send, std::move(t), peer, tag}; }
  static P2POp recv(at::Tensor t, int peer, int tag = 0) { return {Kind::Recv, std::move(t), peer, tag}; }
};

// User tags are in [0, kMaxUserTag); the tags above are reserved for composed collectives.
constexpr int kMaxUserTag = 30000;

class Communicator : public std::enable_shared_from_this<Communicator> {
 public:
  explicit Communicator(CommOptions options) : options_(options) {
    options_.timeout = checked_timeout(options.timeout, "CommOptions::timeout");
  }
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  std::chrono::milliseconds timeout() const { return options_.timeout; }
  // Whether this communicator moves tensors of the device's type (a torch NCCL group only CUDA
  // ones, MPI and Gloo only CPU ones, the local and routed backends both).
  bool moves(const at::Device& device) const { return supports_device(device); }
  void set_timeout(std::chrono::milliseconds t) { options_.timeout = checked_timeout(t, "set_timeout"); }

  // Point to point. recv's tensor must have the sender's dtype and element count.
  WorkPtr send(const at::Tensor& t, int peer, int tag = 0);
  WorkPtr recv(at::Tensor& t, int peer, int tag = 0);
  // Grouped sends and receives posted together, one handle for all (no ordering deadlock).
  WorkPtr exchange(const std::vector<P2POp>& ops);

  // Collectives. Empty `rows` means equal parts (the first dimension divisible by size()).
  // all_to_all: in's rows in_rows[j] go to rank j; out receives out_rows[j] rows from rank j.
  WorkPtr all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows = {},
                     const std::vector<int64_t>& in_rows = {});
  // all_gather: out = concatenation of every rank's `in` (rank j contributes rows[j] rows).
  WorkPtr all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows = {});
  // reduce_scatter: out = rows of the reduced `in` that belong to this rank (rows[rank]).
  WorkPtr reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows = {},
                         ReduceOp op = ReduceOp::Sum);
  WorkPtr all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::Sum);  // in place
  WorkPtr broadcast(at::Tensor& t, int root);                      // in place
  WorkPtr barrier();

  // Ranks with the same color form a new communicator, ordered by (key, rank); a negative color
  // returns nullptr. A collective over this communicator.
  virtual std::shared_ptr<Communicator> split(int color, int key) = 0;

 protected:
  // Backends implement point to point; `tag` may be a reserved one (>= kMaxUserTag).
  virtual WorkPtr do_send(const at::Tensor& t, int peer, int tag) = 0;
  virtual WorkPtr do_recv(at::Tensor& t, int peer, int tag) = 0;
  // Whether the backend can move tensors of this device type at all.
  virtual bool supports_device(const at::Device& device) const = 0;

  // Native versions may override these; the defaults compose point-to-point operations.
  // Arguments arrive validated, with explicit per-rank row counts.
  virtual WorkPtr do_exchange(const std::vector<P2POp>& ops);
  virtual WorkPtr do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                                const std::vector<int64_t>& in_rows);
  virtual WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows);
  virtual WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                                    ReduceOp op);
  virtual WorkPtr do_all_reduce(at::Tensor& t, ReduceOp op);
  virtual WorkPtr do_broadcast(at::Tensor& t, int root);
  virtual WorkPtr do_barrier();

  // For a communicator that wraps another (the sim backend): the wrapped one's backend
  // operations, reserved tags allowed (its collectives' messages pass through the wrapper).
  static WorkPtr inner_send(Communicator& inner, const at::Tensor& t, int peer, int tag) {
    return inner.do_send(t, peer, tag);
  }
  static WorkPtr inner_recv(Communicator& inner, at::Tensor& t, int peer, int tag) {
    return inner.do_recv(t, peer, tag);
  }

  // "backend mpi: <op> ..." prefix used in every message.
  std::string describe(const std::string& op) const;
  // Throws InvalidArgument/Unsupported naming backend, operation and the offending value.
  void check_tensor(const at::Tensor& t, const char* op, const char* name) const;
  void check_peer(int peer, const char* op) const;

 private:
  std::vector<int64_t> resolve_rows(const std::vector<int64_t>& rows, int64_t total, const char* op,
                                    const char* what) const;
  CommOptions options_;
};

using CommPtr = std::shared_ptr<Communicator>;

// Bytes of a tensor's data.
inline int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

}  // namespace longhaul
