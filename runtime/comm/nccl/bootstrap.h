// Internal: how an NCCL communicator comes to be — the unique id travels from rank 0 to the others
// over a bootstrap communicator, then every rank joins the NCCL world.
#pragma once

#include <memory>

#include "runtime/comm/comm.h"
#include "runtime/comm/nccl/handle.h"

namespace longhaul::nccl {

// The Communicator over an initialised handle (communicator.cpp).
CommPtr make_communicator(std::shared_ptr<Handle> handle, int rank, int size, CommOptions options);

// The device an nccl::Options::device of -1 means (the current one); throws when CUDA is absent.
int resolve_device(int requested);

}  // namespace longhaul::nccl
