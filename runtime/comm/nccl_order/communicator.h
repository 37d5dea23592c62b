// NCCL-order mode: a communicator that moves data over another backend (local, mpi, c10d, routed)
// under NCCL's rules instead of that backend's, so a schedule that would break on a real NCCL
// cluster breaks on the CPU, with an error that says why:
// - Point-to-point messages between two ranks are matched in posting order; tags are ignored for
//   matching. A matched pair whose tag, dtype or element count differ fails on both ranks with a
//   message naming both operations (real NCCL would corrupt the buffer or hang silently).
// - A rank's operations run one after another, as kernels on one CUDA stream: an exchange() is one
//   group, a collective is one operation, standalone send()/recv() are deferred and posted as one
//   group at the next wait() or done() on any of them, exchange(), collective or split() (what the
//   NCCL backend does). An operation is not visible to its peers before every earlier operation of
//   its rank has completed; a send completes when its receiver has received it (rendezvous).
// - A wait on an operation that the stream can never reach ends at the deadline with a
//   TimeoutError naming the waited operation and the one that blocks the stream.
// - A rank uses its communicators (the wrapped one and its splits) in turn, as NCCL asks of
//   communicators sharing a GPU: posting on one while another has an unfinished operation is a
//   CommError naming both.
// Used by tests and by LONGHAUL_NCCL_ORDER=1 (longhaul::init); each rank's communicator is used
// by one thread, as an NCCL communicator is.
#pragma once

#include "runtime/comm/comm.h"

namespace longhaul::nccl_order {

// Wraps `inner` (any backend; its tags are used for the checker's own wire traffic, so nothing
// else may use `inner` meanwhile). The deadline is `inner`'s timeout.
CommPtr wrap(CommPtr inner);

// Whether LONGHAUL_NCCL_ORDER=1 asks for this mode (longhaul::init and the Python module's
// from_process_group honour it, so whole test suites run under NCCL's rules unchanged).
bool requested_by_env();

}  // namespace longhaul::nccl_order
