// Activation checkpointing of one block: forward runs fn without keeping activations; backward
// runs fn again with autograd on and back-propagates through it (a re-entrant backward, as torch's
// reentrant checkpoint does). fn contains the CP attention, so the recomputation repeats its
// communication: every rank of the CP group recomputes the same blocks in the same order
// (backward visits the blocks last to first on every rank), so the collectives stay matched.
// Gradients of the parameters used by fn accumulate into their .grad directly.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace longhaul::train {

using BlockFn = std::function<at::Tensor(const at::Tensor&)>;

at::Tensor checkpointed(const BlockFn& fn, const at::Tensor& x);

}  // namespace longhaul::train
