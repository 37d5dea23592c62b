// Gradient synchronisation: every parameter's gradient goes into one buffer on the parameters'
// device, in their accumulate type (float32; float64 for float64 parameters), which is
// all-reduced (summed) over the whole world and clipped to a global norm. Each rank's loss was
// already divided by the step's GLOBAL target count, so the sum over all ranks — whatever CP
// groups the step ran in — is the exact gradient of the global mean loss.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul::train {

// Returns the global gradient norm before clipping (clip <= 0: no clipping). Missing gradients
// (a rank whose group had no sequence this step) count as zeros (and are created).
double sync_gradients(const std::vector<at::Tensor>& params, Communicator& world, double clip);

}  // namespace longhaul::train
