// The `c10d` backend: a Communicator over a torch c10d::Backend — Gloo on CPU tensors, which
// longhaul creates itself over a c10d store (torchrun, Slurm), or any process group a caller hands
// in (e.g. Python's torch.distributed group). Native c10d collectives where the backend has
// them (all_reduce, broadcast, barrier, all_to_all with split sizes, all_gather and
// reduce_scatter with equal parts); with per-rank counts all_gather pads every part to the
// largest and reduce_scatter takes torch's list form; an exchange is one coalesced launch over
// NCCL and is composed from send/recv over Gloo (comm.cpp). Deadlines: the Work's, with Gloo's
// own operation timeout set to the same value.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/util/intrusive_ptr.h>

#include <string>

#include "runtime/comm/comm.h"

namespace c10d {
class Backend;
class ProcessGroup;
class Store;
}  // namespace c10d

namespace longhaul::c10d_backend {

// A Gloo world over `store`: every rank of [0, size) calls this with the same size; each first
// announces itself on the store and checks the others (missing ranks, disagreeing world sizes and
// duplicate ranks fail with a CommError within options.timeout). bind_address: where this rank's
// Gloo listens (see make_gloo in gloo.h; empty: GLOO_SOCKET_IFNAME or the host name's address).
CommPtr create_world(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, CommOptions options = {},
                     const std::string& bind_address = {});

// Where the ranks meet: a TCPStore at host:port that rank 0 serves (port 0 on a one-rank world:
// any), or one a launcher's agent already serves (torchrun's, TORCHELASTIC_USE_AGENT_STORE);
// `prefix` keeps the keys of one attempt apart from a restarted job's. Gloo listens on the local
// address on the route to `host` (unless GLOO_SOCKET_IFNAME names an interface).
struct TcpStoreOptions {
  bool rank0_serves = true;
  std::string prefix;
};
CommPtr create_world_tcp(const std::string& host, int port, int rank, int size, CommOptions options = {},
                         const TcpStoreOptions& store = {});

// Wraps an existing backend. `store` (the group's, or one all its ranks share) is needed only by
// split(); without it split() throws Unsupported.
CommPtr wrap(const c10::intrusive_ptr<c10d::Backend>& backend,
             const c10::intrusive_ptr<c10d::Store>& store = {}, CommOptions options = {});
// Drops this process's hold on every process group wrap() wrapped, every world create_world()
// made and the groups split from them; their communicators then fail with a CommError. The Python
// module calls it at interpreter exit: a group that torch destroyed (destroy_process_group) but a
// live ContextParallel still held, or longhaul's own world, was otherwise torn down during the
// interpreter's own teardown, where Gloo's destruction aborted the process (std::terminate).
void release_wrapped();
// Called by the Python module at import: a communicator dropped from Python (the GIL held) then
// destroys its process group on a thread of its own, since Gloo's workers may need the GIL to
// drop the Python tensors they hold (an inline destruction would wait on them for ever).
void destroy_groups_off_thread();
// Wraps the backend of `group` for tensors of `device` (its store comes along). CPU tensors take
// the group's CPU backend, or, for a group that has none (torch's "nccl" alone), a Gloo group made
// over the group's store by the first wrap of that group on every rank and kept for the group's
// lifetime. For a CUDA device the result routes by device: CUDA tensors over the group's CUDA
// backend, CPU tensors over that host side (so agreements and plans never wait for the stream).
// Deadlines over NCCL are torch's: its Work completes in stream order, so the group's own timeout
// and TORCH_NCCL_ASYNC_ERROR_HANDLING govern a dead peer, not `options.timeout`.
CommPtr wrap(const c10::intrusive_ptr<c10d::ProcessGroup>& group,
             c10::DeviceType device = c10::DeviceType::CPU, CommOptions options = {});

}  // namespace longhaul::c10d_backend
