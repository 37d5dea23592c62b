// The `local` backend: P ranks as threads of one process, for fast tests and to emulate a P-rank
// ring on one device. A send copies its tensor at once (the caller may reuse the buffer when the
// call returns); CUDA tensors are copied on the sender's current stream, which is synchronised
// before the message becomes visible, and received on the receiver's current stream.
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul::local {

// Creates the communicators of a P-rank local world; element r is rank r's.
std::vector<CommPtr> create_world(int size, CommOptions options = {});

// Runs fn(comm) on `size` threads, one per rank, single-threaded ATen inside; joins all and
// rethrows the first exception to escape a rank (the cause). That exception also fails every
// receive its peers wait on, or post later, with a CommError naming the rank and its error, so
// they end at once instead of at their deadline.
void run_ranks(int size, const std::function<void(Communicator&)>& fn, CommOptions options = {});

// Called first on a thread-rank that emulates a rank of its own GPU on a shared `device`: makes
// the device current (a new thread has no CUDA context, which cuBLAS warns about) and gives the
// thread a stream of its own from the pool, so the ranks' work overlaps as on separate GPUs, and
// runs the thread's autograd backward on the thread itself (not on autograd's one worker thread
// per device, where two ranks' communicating backwards would deadlock). No-op for a CPU device.
void enter_device_rank(const c10::Device& device);

}  // namespace longhaul::local
