// The `routed` communicator: one group of ranks, two transports chosen per operation by the
// tensors' device — CPU tensors over the host backend (mpi, c10d/Gloo or local), CUDA tensors over
// the device backend (NCCL). This is what `longhaul::init` hands out on a GPU rank, so a training
// step can all-reduce CUDA gradients and exchange CPU metadata through the same World::comm().
//
// Both backends must span the same ranks in the same order (the device backend is normally
// bootstrapped over the host one). An operation whose tensors sit on two devices, or on a device
// neither backend moves, is an error naming the devices. barrier() runs on the host backend.
#pragma once

#include "runtime/comm/comm.h"

namespace longhaul::routed {

// host: moves CPU tensors; cuda: moves CUDA tensors (may be null: CUDA tensors are then refused
// with a message saying why). Throws InvalidArgument when their rank or size differ.
CommPtr wrap(CommPtr host, CommPtr cuda);

}  // namespace longhaul::routed
