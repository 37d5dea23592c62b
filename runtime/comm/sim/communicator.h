// The `sim` backend: P ranks as threads of one process (the local backend underneath, so
// matching, deadlines and collectives are the real ones) whose transfers take virtual time on a
// modelled network instead of real time. Each rank's thread carries a virtual_clock::RankClock
// (core/virtual_clock.h); a transfer of b bytes from s to d leaves s when s posts it and its
// egress link is free, takes latency + b / bandwidth of the link between them (NVLink-class
// inside a node, InfiniBand-class across), queues behind earlier arrivals on d's ingress link,
// and completes the receive no earlier than it was posted. wait() on a send advances the sender's
// clock to the end of its transmission, on a receive the receiver's clock to the arrival; the
// time a rank spends so is its exposed communication. all_gather and reduce_scatter are one NCCL
// collective on the NCCL backend (grouped broadcasts / reduces for uneven parts), so here they
// take the time of NCCL's rings (one per NIC across nodes) from the moment their last member
// posts them; every other collective is composed of the point-to-point transfers above, as there. Tensors may be shape-only (meta): only
// their byte counts matter. Deterministic: every clock update depends only on the two ranks'
// posting order, never on the threads' real timing.
#pragma once

#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul::sim {

struct Link {
  double latency_s;
  double bytes_per_s;  // per direction
};

struct Network {
  int ranks_per_node = 8;
  Link intra{3e-6, 360e9};  // H100 NVLink 4: ~450 GB/s per direction peak, ~360 achieved by NCCL P2P
  Link inter{6e-6, 45e9};   // one 400 Gb/s InfiniBand NIC per GPU, ~45 GB/s achieved
  const Link& between(int a, int b) const { return a / ranks_per_node == b / ranks_per_node ? intra : inter; }
};

// The communicators of a P-rank simulated world; element r is rank r's. Every rank's thread must
// have set its virtual_clock (virtual_clock::set_current) before it communicates.
std::vector<CommPtr> create_world(int size, const Network& network, CommOptions options = {});

}  // namespace longhaul::sim
