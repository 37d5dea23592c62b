// Collective-checking mode: a communicator that, before each collective (and split), compares
// what every rank is calling — the operation, reduce op or root, dtype, device, element or row
// counts, the per-rank rows, and for all_to_all that what rank i sends to rank j is what j
// expects from i — and throws the same InvalidArgument on every rank when they differ, naming the
// collective's number, both ranks and both calls:
//   "backend mpi: collective #3 differs across ranks: rank 0 calls all_reduce (sum) of 1024
//    float32 elements on cpu, rank 1 calls all_reduce (max) of 1024 float32 elements on cpu"
// Without it such a program reduces with a mixed op, truncates, or waits until the deadline.
// The check is one small all_gather per collective, blocking at the call: a debugging mode (as
// torch's TORCH_DISTRIBUTED_DEBUG=DETAIL), asked for with LONGHAUL_CHECK_COLLECTIVES=1
// (longhaul::init, the Python module) or CommOptions::check_collectives (local worlds). Blocking
// at the call keeps every valid program under NCCL's rules valid: a collective there is not
// complete before every rank has entered it. Point-to-point operations pass through unchecked
// (NCCL-order mode checks their matching).
#pragma once

#include "runtime/comm/comm.h"

namespace longhaul::checked {

// Wraps `inner` (any backend); rank, size, backend name and deadline are inner's.
CommPtr wrap(CommPtr inner);

// Whether LONGHAUL_CHECK_COLLECTIVES=1 asks for this mode (0 or unset: off; other values are an
// InvalidArgument).
bool requested_by_env();

}  // namespace longhaul::checked
