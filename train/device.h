// `--device` of `longhaul train`: where parameters, optimiser state, batches and every tensor of
// the step live. One GPU per rank: "cuda" is this thread's current CUDA device, which
// longhaul::init sets to local_rank % visible devices (thread-ranks that emulate ranks on one
// GPU set theirs with local::enter_device_rank).
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "runtime/comm/comm.h"

namespace longhaul::train {

// "cpu", "cuda" or "cuda:N". InvalidArgument naming what was asked and what exists when torch has
// no CUDA, sees no device, or has no device N; and for any other name.
c10::Device training_device(const std::string& name);

// With a CUDA device on a world of several ranks: one all-reduce of a one-element tensor on it, so
// a world that cannot move CUDA tensors (MPI or Gloo without NCCL) is refused at start, by name,
// rather than at the first CP exchange. A collective; nothing for the CPU or a world of one.
void require_device_transport(Communicator& world, const c10::Device& device);

// Waits until the work queued on the device's current stream is done (no-op on the CPU): step
// timings then measure the step, not the launches.
void synchronize(const c10::Device& device);

}  // namespace longhaul::train
