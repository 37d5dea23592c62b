// Gradient synchronisation: every parameter's gradient goes into one float32 buffer, which is
// all-reduced (summed) over the CP group and then over the data-parallel group, and clipped to a
// global norm. Each rank's loss was already divided by the GLOBAL target count (dp × cp), so the
// sum over data-parallel replicas is the average of the replicas' mean-loss gradients weighted by
// their target counts — the exact gradient of the global mean loss.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul::train {

// Returns the global gradient norm before clipping (clip <= 0: no clipping). dp may be null or of
// size 1 (skipped). Missing gradients count as zeros (and are created).
double sync_gradients(const std::vector<at::Tensor>& params, Communicator& cp, Communicator* dp, double clip);

}  // namespace longhaul::train
