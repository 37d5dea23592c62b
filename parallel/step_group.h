// The transfers of one step of a CP schedule, posted as one group. Every strategy's point-to-point
// traffic goes through this, so the rule that makes a schedule NCCL-safe lives here:
// - a step's sends and receives are posted together, as one exchange (one NCCL group), sorted by
//   tag (then receives after sends, then peer): two ranks that queue the same messages for each
//   other, in any order, post them in the same order;
// - a (peer, tag) appears at most once per direction in a group (checked);
// - receive buffers are allocated here and counted in CpStats; sent tensors stay alive until the
//   group has completed; sent bytes are counted.
// Schedules built from StepGroups keep one more rule by construction: every message a rank sends
// in its group s is received in the peer's group s, so no rank waits on a receive that only a
// later group of its own could unblock.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "parallel/stats.h"
#include "parallel/tags.h"
#include "runtime/comm/comm.h"

namespace longhaul {

class StepGroup {
 public:
  // Sent bytes are added to `bytes_sent` (CpStats::bytes_sent_fwd or _bwd).
  StepGroup(Communicator& comm, CpStats& stats, int64_t& bytes_sent)
      : comm_(&comm), stats_(&stats), bytes_(&bytes_sent) {}
  StepGroup(const StepGroup&) = delete;
  StepGroup& operator=(const StepGroup&) = delete;
  ~StepGroup();  // waits for a posted group (errors are swallowed: an exception is already on its way)

  // A send of a tensor the caller holds (kept alive here until the group completes).
  void send(const at::Tensor& t, int peer, Tag tag);
  // A send of a tensor made for it (also counted in CpStats until the group completes).
  void send_temporary(const at::Tensor& t, int peer, Tag tag);
  // A receive into a new buffer of `sizes` and `options`, counted in CpStats while the returned
  // Tracked lives; its contents are valid after wait().
  Tracked recv(at::IntArrayRef sizes, const at::TensorOptions& options, int peer, Tag tag);

  bool empty() const { return ops_.empty(); }
  // Posts the queued operations as one exchange (nothing when empty). Once per group.
  void post();
  // Waits for the posted group (no-op when nothing was posted) and releases the sent tensors.
  void wait();

 private:
  void add(P2POp op);

  Communicator* comm_;
  CpStats* stats_;
  int64_t* bytes_;
  std::vector<P2POp> ops_;
  std::vector<Tracked> held_;  // temporaries counted until the group completes
  WorkPtr work_;
  bool posted_ = false;
};

}  // namespace longhaul
