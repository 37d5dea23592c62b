#include "runtime/comm/comm.h"

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <algorithm>
#include <numeric>

#include "core/errors.h"
#include "core/offsets.h"

namespace longhaul {

std::chrono::milliseconds timeout_of_seconds(double seconds, const std::string& what) {
  if (!(seconds > 0))
    throw InvalidArgument(detail::str_cat(what, " ", seconds, ": expected a number of seconds > 0 (inf: no deadline)"));
  const double longest = kLongestTimeout.count() / 1000.0;  // 1e10 s would overflow now + deadline in ns
  return std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(std::min(seconds, longest) * 1000)));
}

std::chrono::milliseconds checked_timeout(std::chrono::milliseconds t, const std::string& what) {
  if (t.count() <= 0)
    throw InvalidArgument(detail::str_cat(what, ": a deadline of ", t.count(), " ms; expected one > 0 (",
                                          "milliseconds::max() or any past about 3 years: no deadline)"));
  return std::min(t, kLongestTimeout);
}

namespace {
// Reserved tags of the collectives composed from point-to-point operations. Per (pair, tag) the
// messages are FIFO and every rank issues collectives in the same order, so one tag per kind is
// enough.
constexpr int kTagAllToAll = kMaxUserTag + 1;
constexpr int kTagAllGather = kMaxUserTag + 2;
constexpr int kTagReduceScatter = kMaxUserTag + 3;
constexpr int kTagAllReduce = kMaxUserTag + 4;
constexpr int kTagBroadcast = kMaxUserTag + 5;
constexpr int kTagBarrier = kMaxUserTag + 6;

// Reduces `parts` (one per rank, in rank order) into `out`. The fixed order makes the result
// identical on every rank. (Low-precision sums arrive here already widened: see wide_sum.)
void reduce_in_rank_order(at::Tensor& out, const std::vector<at::Tensor>& parts, ReduceOp op) {
  at::Tensor acc = parts[0].clone();
  for (size_t i = 1; i < parts.size(); ++i) {
    const at::Tensor& p = parts[i];
    switch (op) {
      case ReduceOp::Sum: acc.add_(p); break;
      case ReduceOp::Max: at::maximum_out(acc, acc, p); break;
      case ReduceOp::Min: at::minimum_out(acc, acc, p); break;
    }
  }
  out.copy_(acc);
}
// A sum of float16/bfloat16 runs in float32 and is rounded once at the end. Native reductions
// (NCCL's, MPI's, Gloo's) otherwise round after every addition, in an order of their own: with
// P ranks the error grows with P and differs between backends. This costs twice the bytes of the
// low-precision sum; maximum and minimum are exact in any precision and keep theirs.
bool wide_sum(const at::Tensor& t, ReduceOp op) {
  return op == ReduceOp::Sum && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16);
}

// `inner` reduces float32 copies (`wide_in` into `wide_out`); the result is rounded into `out` by
// the waiting thread, on its current stream for CUDA tensors, which the inner Work's wait has
// ordered after the reduction. The Work holds both copies until then.
WorkPtr narrow_when_done(WorkPtr inner, at::Tensor out, at::Tensor wide_out, at::Tensor wide_in) {
  auto work = std::make_shared<Work>(inner->what() + " (summed in float32)", kLongestTimeout, 0);
  work->add_child(std::move(inner));
  work->set_finish([out, wide_out, wide_in]() mutable { out.copy_(wide_out); });
  return work;
}
}  // namespace

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

std::string Communicator::describe(const std::string& op) const {
  return detail::str_cat("backend ", backend(), " (rank ", rank(), " of ", size(), "): ", op);
}

void Communicator::check_tensor(const at::Tensor& t, const char* op, const char* name) const {
  if (!t.defined()) throw InvalidArgument(describe(op) + ": tensor '" + name + "' is undefined");
  if (!supports_device(t.device()))
    throw Unsupported(detail::str_cat("backend ", backend(), " does not support ", op, " on ",
                                      c10::DeviceTypeName(t.device().type()), " tensors"));
  if (!t.is_contiguous())
    throw InvalidArgument(detail::str_cat(describe(op), ": tensor '", name, "' with sizes ", t.sizes(),
                                          " and strides ", t.strides(), " is not contiguous (call .contiguous())"));
}

void Communicator::check_peer(int peer, const char* op) const {
  if (peer < 0 || peer >= size())
    throw InvalidArgument(detail::str_cat(describe(op), ": peer ", peer, " is outside [0, ", size(), ")"));
}

std::vector<int64_t> Communicator::resolve_rows(const std::vector<int64_t>& rows, int64_t total, const char* op,
                                                const char* what) const {
  const int p = size();
  if (rows.empty()) {
    if (total % p != 0)
      throw InvalidArgument(detail::str_cat(describe(op), ": ", what, " has ", total,
                                            " rows, not divisible by ", p, " ranks; pass per-rank row counts"));
    return std::vector<int64_t>(p, total / p);
  }
  if (static_cast<int>(rows.size()) != p)
    throw InvalidArgument(detail::str_cat(describe(op), ": ", rows.size(), " row counts given for ", what,
                                          ", expected one per rank (", p, ")"));
  int64_t sum = 0;
  for (int64_t r : rows) {
    if (r < 0) throw InvalidArgument(detail::str_cat(describe(op), ": negative row count ", r, " for ", what));
    sum += r;
  }
  if (sum != total)
    throw InvalidArgument(detail::str_cat(describe(op), ": row counts for ", what, " sum to ", sum,
                                          " but the tensor has ", total, " rows"));
  return rows;
}

namespace {
// Rows must agree in everything but the first dimension, and dtypes must match.
void check_same_rows(const at::Tensor& a, const at::Tensor& b, const std::string& where) {
  if (a.scalar_type() != b.scalar_type())
    throw InvalidArgument(detail::str_cat(where, ": dtypes differ, ", a.scalar_type(), " vs ", b.scalar_type()));
  if (a.dim() != b.dim() || a.dim() == 0 || a.sizes().slice(1) != b.sizes().slice(1))
    throw InvalidArgument(detail::str_cat(where, ": row shapes differ, sizes ", a.sizes(), " vs ", b.sizes(),
                                          " (all dimensions but the first must match)"));
}

// A buffer a call writes must not share memory with another of its buffers: the backends read and
// write them in no fixed order (MPI forbids aliased buffers, NCCL allows only exact in-place
// collectives, which no caller uses), so the result would depend on the backend and the timing.
bool share_memory(const at::Tensor& a, const at::Tensor& b) {
  return a.numel() > 0 && b.numel() > 0 && at::get_overlap_status(a, b) != at::MemOverlapStatus::No;
}

[[noreturn]] void refuse_shared(const at::Tensor& a, const at::Tensor& b, const std::string& where,
                                const std::string& names) {
  throw InvalidArgument(detail::str_cat(where, ": ", names, " share memory (sizes ", a.sizes(), " at ", a.data_ptr(),
                                        ", sizes ", b.sizes(), " at ", b.data_ptr(), "); pass separate buffers"));
}
}  // namespace

// ---- public entry points: validate, then call the backend ----------------------------------

WorkPtr Communicator::send(const at::Tensor& t, int peer, int tag) {
  check_tensor(t, "send", "tensor");
  check_peer(peer, "send");
  LH_CHECK(tag >= 0 && tag < kMaxUserTag, describe("send"), ": tag ", tag, " outside [0, ", kMaxUserTag, ")");
  return do_send(t, peer, tag);
}

WorkPtr Communicator::recv(at::Tensor& t, int peer, int tag) {
  check_tensor(t, "recv", "tensor");
  check_peer(peer, "recv");
  LH_CHECK(tag >= 0 && tag < kMaxUserTag, describe("recv"), ": tag ", tag, " outside [0, ", kMaxUserTag, ")");
  return do_recv(t, peer, tag);
}

WorkPtr Communicator::exchange(const std::vector<P2POp>& ops) {
  for (const auto& op : ops) {
    const char* name = op.kind == P2POp::Kind::Send ? "exchange(send)" : "exchange(recv)";
    check_tensor(op.tensor, name, "tensor");
    check_peer(op.peer, name);
    LH_CHECK(op.tag >= 0 && op.tag < kMaxUserTag, describe(name), ": tag ", op.tag, " outside [0, ", kMaxUserTag, ")");
  }
  // Sends may share a buffer (one tensor to several peers); a receive shares with nothing.
  auto describe_op = [&](size_t i) {
    return detail::str_cat(ops[i].kind == P2POp::Kind::Send ? "the send to" : "the receive from", " peer ",
                           ops[i].peer, " (operation ", i, ")");
  };
  for (size_t i = 0; i < ops.size(); ++i)
    for (size_t j = i + 1; j < ops.size(); ++j)
      if ((ops[i].kind == P2POp::Kind::Recv || ops[j].kind == P2POp::Kind::Recv) &&
          share_memory(ops[i].tensor, ops[j].tensor))
        refuse_shared(ops[i].tensor, ops[j].tensor, describe("exchange"), describe_op(i) + " and " + describe_op(j));
  return do_exchange(ops);
}

WorkPtr Communicator::all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                                 const std::vector<int64_t>& in_rows) {
  check_tensor(in, "all_to_all", "in");
  check_tensor(out, "all_to_all", "out");
  check_same_rows(out, in, describe("all_to_all"));
  if (share_memory(out, in)) refuse_shared(out, in, describe("all_to_all"), "out and in");
  auto ir = resolve_rows(in_rows, in.size(0), "all_to_all", "in");
  auto orow = resolve_rows(out_rows, out.size(0), "all_to_all", "out");
  return do_all_to_all(out, in, orow, ir);
}

WorkPtr Communicator::all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) {
  check_tensor(in, "all_gather", "in");
  check_tensor(out, "all_gather", "out");
  check_same_rows(out, in, describe("all_gather"));
  if (share_memory(out, in)) refuse_shared(out, in, describe("all_gather"), "out and in");
  auto r = resolve_rows(rows, out.size(0), "all_gather", "out");
  if (r[rank()] != in.size(0))
    throw InvalidArgument(detail::str_cat(describe("all_gather"), ": this rank contributes ", in.size(0),
                                          " rows but its row count says ", r[rank()]));
  return do_all_gather(out, in, r);
}

WorkPtr Communicator::reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                                     ReduceOp op) {
  check_tensor(in, "reduce_scatter", "in");
  check_tensor(out, "reduce_scatter", "out");
  check_same_rows(out, in, describe("reduce_scatter"));
  if (share_memory(out, in)) refuse_shared(out, in, describe("reduce_scatter"), "out and in");
  auto r = resolve_rows(rows, in.size(0), "reduce_scatter", "in");
  if (r[rank()] != out.size(0))
    throw InvalidArgument(detail::str_cat(describe("reduce_scatter"), ": out has ", out.size(0),
                                          " rows but this rank's row count is ", r[rank()]));
  if (!wide_sum(in, op)) return do_reduce_scatter(out, in, r, op);
  at::Tensor wide_in = in.to(at::kFloat), wide_out = at::empty(out.sizes(), out.options().dtype(at::kFloat));
  return narrow_when_done(do_reduce_scatter(wide_out, wide_in, r, op), out, wide_out, wide_in);
}

WorkPtr Communicator::all_reduce(at::Tensor& t, ReduceOp op) {
  check_tensor(t, "all_reduce", "tensor");
  if (!wide_sum(t, op)) return do_all_reduce(t, op);
  at::Tensor wide = t.to(at::kFloat);
  return narrow_when_done(do_all_reduce(wide, op), t, wide, wide);
}

WorkPtr Communicator::broadcast(at::Tensor& t, int root) {
  check_tensor(t, "broadcast", "tensor");
  check_peer(root, "broadcast");
  return do_broadcast(t, root);
}

WorkPtr Communicator::barrier() { return do_barrier(); }

// ---- collectives composed from point to point (backends override with native ones) ----------

WorkPtr Communicator::do_exchange(const std::vector<P2POp>& ops) {
  auto work = std::make_shared<Work>(describe(detail::str_cat("exchange of ", ops.size(), " operations")),
                                     timeout(), 0);
  for (const auto& op : ops) {
    at::Tensor t = op.tensor;
    work->add_child(op.kind == P2POp::Kind::Send ? do_send(t, op.peer, op.tag) : do_recv(t, op.peer, op.tag));
  }
  return work;
}

WorkPtr Communicator::do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                                    const std::vector<int64_t>& in_rows) {
  auto work = std::make_shared<Work>(describe("all_to_all"), timeout(), 0);
  const auto ioff = offsets_of(in_rows), ooff = offsets_of(out_rows);
  for (int j = 0; j < size(); ++j) {
    at::Tensor src = in.narrow(0, ioff[j], in_rows[j]);
    at::Tensor dst = out.narrow(0, ooff[j], out_rows[j]);
    if (j == rank()) {
      LH_CHECK_EQ(src.numel(), dst.numel(), describe("all_to_all"), ": rows to self");
      dst.copy_(src);
      continue;
    }
    work->add_child(do_send(src, j, kTagAllToAll));
    work->add_child(do_recv(dst, j, kTagAllToAll));
  }
  return work;
}

WorkPtr Communicator::do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) {
  auto work = std::make_shared<Work>(describe("all_gather"), timeout(), 0);
  const auto off = offsets_of(rows);
  for (int j = 0; j < size(); ++j) {
    at::Tensor dst = out.narrow(0, off[j], rows[j]);
    if (j == rank()) {
      dst.copy_(in);
      continue;
    }
    work->add_child(do_send(in, j, kTagAllGather));
    work->add_child(do_recv(dst, j, kTagAllGather));
  }
  return work;
}

WorkPtr Communicator::do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                                        ReduceOp op) {
  auto work = std::make_shared<Work>(describe("reduce_scatter"), timeout(), 0);
  const auto off = offsets_of(rows);
  std::vector<at::Tensor> parts(size());
  for (int j = 0; j < size(); ++j) {
    if (j == rank()) {
      parts[j] = in.narrow(0, off[j], rows[j]);
      continue;
    }
    parts[j] = at::empty_like(out);
    work->add_child(do_send(in.narrow(0, off[j], rows[j]), j, kTagReduceScatter));
    work->add_child(do_recv(parts[j], j, kTagReduceScatter));
  }
  work->set_finish([out, parts, op]() mutable { reduce_in_rank_order(out, parts, op); });
  return work;
}

WorkPtr Communicator::do_all_reduce(at::Tensor& t, ReduceOp op) {
  auto work = std::make_shared<Work>(describe("all_reduce"), timeout(), 0);
  std::vector<at::Tensor> parts(size());
  for (int j = 0; j < size(); ++j) {
    if (j == rank()) {
      parts[j] = t.clone();  // t is overwritten by the result
      continue;
    }
    parts[j] = at::empty_like(t);
    work->add_child(do_send(t, j, kTagAllReduce));
    work->add_child(do_recv(parts[j], j, kTagAllReduce));
  }
  work->set_finish([t, parts, op]() mutable { reduce_in_rank_order(t, parts, op); });
  return work;
}

WorkPtr Communicator::do_broadcast(at::Tensor& t, int root) {
  auto work = std::make_shared<Work>(describe(detail::str_cat("broadcast from ", root)), timeout(), 0);
  if (rank() == root) {
    for (int j = 0; j < size(); ++j)
      if (j != root) work->add_child(do_send(t, j, kTagBroadcast));
  } else {
    work->add_child(do_recv(t, root, kTagBroadcast));
  }
  return work;
}

WorkPtr Communicator::do_barrier() {
  auto work = std::make_shared<Work>(describe("barrier"), timeout(), 0);
  at::Tensor token = at::empty({0}, at::kByte);
  for (int j = 0; j < size(); ++j) {
    if (j == rank()) continue;
    at::Tensor in = at::empty({0}, at::kByte);
    work->add_child(do_send(token, j, kTagBarrier));
    work->add_child(do_recv(in, j, kTagBarrier));
  }
  return work;
}

}  // namespace longhaul
