#include "runtime/comm/nccl_order/wire.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/errors.h"

namespace longhaul::nccl_order {
namespace {

// Tags of the checker's own traffic on the inner backend (nothing else uses it meanwhile).
constexpr int kWireHeader = 1, kWirePayload = 2, kWireAck = 3;

std::string describe(const Desc& d) {
  return detail::str_cat("tag ", d.tag, ", ", c10::toString(static_cast<at::ScalarType>(d.dtype)), ", ", d.numel,
                         " elements; operation #", d.item, " of its stream");
}

std::string side(int rank, bool send, int peer, const Desc& d) {
  return detail::str_cat("rank ", rank, "'s ", send ? "send to" : "recv from", " rank ", peer, " (", describe(d), ")");
}

std::string mismatch(int send_rank, const Desc& s, int recv_rank, const Desc& r) {
  return detail::str_cat("NCCL order: ", side(recv_rank, false, send_rank, r), " was matched with ",
                         side(send_rank, true, recv_rank, s),
                         ": NCCL matches a pair's messages in posting order and ignores tags, so both ranks must "
                         "post their operations to each other in the same order (a real NCCL run would ",
                         s.numel == r.numel && s.dtype == r.dtype ? "silently deliver the wrong data" : "corrupt memory or hang",
                         ")");
}

bool progress_send(int rank, WireOp& w) {
  if (!w.header->done() || !w.payload->done() || !w.ack->done()) return false;
  const Desc theirs = Desc::unpack(w.ack_buf);
  if (!w.desc.matches(theirs)) throw CommError(mismatch(rank, w.desc, w.op.peer, theirs));
  return true;
}

bool progress_recv(Communicator& inner, int rank, WireOp& w, bool may_post_payload, bool may_ack) {
  if (!w.payload) {
    if (!may_post_payload || !w.header->done()) return false;
    const Desc theirs = Desc::unpack(w.header_buf);
    if (!w.desc.matches(theirs)) {
      if (!may_ack) return false;  // the earlier receives' acknowledgements go first
      w.ack_buf = w.desc.pack();
      inner.send(w.ack_buf, w.op.peer, kWireAck);  // the sender fails with the same message
      throw CommError(mismatch(w.op.peer, theirs, rank, w.desc));
    }
    at::Tensor dst = w.op.tensor;
    w.payload = inner.recv(dst, w.op.peer, kWirePayload);
  }
  if (!w.ack_sent) {
    if (!may_ack || !w.payload->done()) return false;
    w.ack_buf = w.desc.pack();
    w.ack_sent = inner.send(w.ack_buf, w.op.peer, kWireAck);
  }
  return w.ack_sent->done();
}

}  // namespace

at::Tensor Desc::pack() const { return at::tensor({tag, dtype, numel, item}, at::kLong); }

Desc Desc::unpack(const at::Tensor& t) {
  auto a = t.accessor<int64_t, 1>();
  return {a[0], a[1], a[2], a[3]};
}

void post(Communicator& inner, WireOp& w) {
  if (w.op.kind == P2POp::Kind::Send) {
    w.header_buf = w.desc.pack();
    w.header = inner.send(w.header_buf, w.op.peer, kWireHeader);
    w.payload = inner.send(w.op.tensor, w.op.peer, kWirePayload);
    w.ack_buf = at::empty({Desc::kLen}, at::kLong);
    w.ack = inner.recv(w.ack_buf, w.op.peer, kWireAck);
  } else {
    w.header_buf = at::empty({Desc::kLen}, at::kLong);
    w.header = inner.recv(w.header_buf, w.op.peer, kWireHeader);
  }
}

bool progress(Communicator& inner, int rank, std::vector<WireOp>& ops) {
  bool all = true;
  // The receives from one peer post their payload receives and send their acknowledgements in
  // posting order (the sender pairs acknowledgements with its sends in that order), even when
  // their messages complete out of order: a receive waits while an earlier one from the same
  // peer has not reached that stage.
  std::vector<int> payload_pending, ack_pending;  // peers with an earlier receive not there yet
  auto has = [](const std::vector<int>& v, int peer) { return std::find(v.begin(), v.end(), peer) != v.end(); };
  for (auto& w : ops) {
    if (w.op.kind == P2POp::Kind::Send) {
      if (!w.done) w.done = progress_send(rank, w);
    } else {
      if (!w.done) w.done = progress_recv(inner, rank, w, !has(payload_pending, w.op.peer), !has(ack_pending, w.op.peer));
      if (!w.payload) payload_pending.push_back(w.op.peer);
      if (!w.ack_sent) ack_pending.push_back(w.op.peer);
    }
    all = all && w.done;
  }
  return all;
}

}  // namespace longhaul::nccl_order
