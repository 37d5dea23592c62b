// NCCL-order mode, the wire: how one point-to-point operation of a group travels over the inner
// backend (communicator.cpp keeps the stream of groups). Every message travels as a header (what
// the sender posted), then its payload; the receiver answers with an acknowledgement carrying what
// it posted, so both sides see a mismatch and a send completes only once it was received.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul::nccl_order {

// What one side of a point-to-point operation posted, as it travels in a header or an ack.
struct Desc {
  int64_t tag = 0, dtype = 0, numel = 0, item = 0;  // item: its operation number in the rank's stream
  static constexpr int64_t kLen = 4;
  at::Tensor pack() const;
  static Desc unpack(const at::Tensor& t);
  bool matches(const Desc& o) const { return tag == o.tag && dtype == o.dtype && numel == o.numel; }
};

// One point-to-point operation of a group, driven through its wire messages.
struct WireOp {
  P2POp op;
  Desc desc;
  WorkPtr header, payload, ack, ack_sent;  // the inner operations in flight
  at::Tensor header_buf, ack_buf;
  bool done = false;
};

// Posts what an operation can post at once: a send's header, payload and the receive of its
// acknowledgement; a receive's header receive (its payload waits for the header).
void post(Communicator& inner, WireOp& w);

// Advances every operation of a group as far as it goes; true when all are complete. Throws
// CommError naming both operations when a matched pair differs. `rank`: this rank in `inner`.
bool progress(Communicator& inner, int rank, std::vector<WireOp>& ops);

}  // namespace longhaul::nccl_order
