// The `nccl` backend: CUDA tensors over NCCL (the libnccl.so.2 that torch loads: one NCCL per
// process). Each communicator owns a CUDA stream; an operation waits for the caller's current
// stream (an event), runs on the communication stream, and its Work completes when the event
// recorded after it has passed. Work::wait() blocks the host until then and orders the caller's
// current stream after the communication. Compute queued before the wait overlaps with it.
//
// NCCL semantics that show through (keep this backend thin):
// - Messages are matched in posting order per pair of ranks, not by tag; tags only order the
//   operations of one group (exchange() sorts them by tag, stably). A receive must have the
//   sender's byte count: NCCL cannot detect a mismatch (it corrupts or hangs, then the deadline).
// - Standalone send()/recv() are deferred and posted together as one NCCL group at the next
//   wait() on any of them, exchange(), collective or split(): a ring written as send, recv, wait
//   does not deadlock, and a send to oneself meets its receive. Their done() stays false until
//   then, and their deadline counts from the posting; one still unposted at its deadline fails
//   when done() is asked, and is never posted. Prefer exchange() for anything more complex.
// - Posting is serialised per communicator (a deferred group and the operation that flushes it
//   stay together), but every rank must still post the same operations in the same order.
// - A deadline that passes aborts the NCCL communicator (ncclCommAbort): that Work throws
//   TimeoutError, every other one CommError, and the communicator is unusable afterwards.
// - NCCL refuses two ranks on one GPU: more than one rank needs as many GPUs. The device of rank r
//   is usually local_rank % visible devices (Options::device).
#pragma once

#include <string>

#include "runtime/comm/comm.h"

namespace longhaul::nccl {

struct Options {
  int device = -1;          // CUDA device index; -1: the current device
  // NCCL non-blocking mode: init and launches are bounded by the deadline. false: NCCL's blocking
  // mode, where a call that blocks inside NCCL (init or a group waiting on a missing peer) holds
  // the communicator until it returns; only waits on posted work are bounded then.
  bool nonblocking = true;
  CommOptions comm;         // deadline of every wait (and of creation)
};

// A world of one rank: needs no bootstrap.
CommPtr create_world(Options options = {});

// Every rank of `bootstrap` calls this: rank 0 creates the NCCL unique id and broadcasts it over
// `bootstrap` (any backend that moves CPU tensors: the MPI world, a c10d world over a TCPStore, a
// local world). Ranks are bootstrap's. This is the one bootstrap path (longhaul::init uses it).
CommPtr create_world(Communicator& bootstrap, Options options = {});

// The UUID of CUDA device `device` as nvidia-smi -L prints it ("GPU-1b2c3d4e-…"): what tells two
// ranks' GPUs apart across processes and hosts, whatever each one's CUDA_VISIBLE_DEVICES.
std::string gpu_uuid(int device);

}  // namespace longhaul::nccl
