// Checks of every Communicator operation, written once against the interface and run on each
// backend: the local backend with 1–8 thread-ranks (tests/unit) and MPI with 1–4 processes
// (tests/multiprocess). Each function is collective: every rank of `comm` calls it.
#pragma once

#include "runtime/comm/comm.h"

namespace longhaul::testing {

void check_point_to_point(Communicator& comm);
void check_exchange(Communicator& comm);
void check_all_to_all(Communicator& comm);
void check_all_gather(Communicator& comm);
void check_reduce_scatter(Communicator& comm);
void check_all_reduce(Communicator& comm);
// float16/bfloat16 sums are accumulated in float32 and rounded once, on every backend.
void check_low_precision_sums(Communicator& comm);
void check_broadcast_and_barrier(Communicator& comm);
void check_split(Communicator& comm);
void check_zero_size(Communicator& comm);
void check_argument_errors(Communicator& comm);
// A receive sized differently from the message fails with CommError naming both sizes.
void check_size_mismatch(Communicator& comm);
// Collectives whose ranks disagree on counts so that one rank would receive fewer bytes than it
// expects (all_to_all, all_gather, broadcast): that rank gets a CommError naming the peer and both
// counts, never rows silently left unwritten; the others complete.
void check_collective_count_mismatch(Communicator& comm);
// A receive nobody sends times out with the operation, the peer and the elapsed time; the
// message is sent afterwards so no request is left behind.
void check_timeout(Communicator& comm);

// 1 if every rank passes (all-reduced min of the flag), so one failing rank fails them all.
bool all_ranks_pass(Communicator& comm, bool mine);

}  // namespace longhaul::testing
