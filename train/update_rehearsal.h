// An optimiser update that changes nothing: the memory preflight (train/preflight.h) runs it
// between its steps so that they allocate as training steps do. Under the kept host-memory policy
// (core/host_allocation.h) the update's temporaries (a parameter's size each) land in the freed
// heap between two steps and decide where the next step's large blocks fit: measured on a 2-core
// AMD EPYC, vocabulary 50257 at 8192 tokens per step, two preflight steps without it peaked at
// 11.9 GiB and with it at 10.4 GiB, the run's own steady state; at vocabulary 128256 the run
// peaked 5.7 GiB above a preflight without it and was killed by the OOM killer.
#pragma once

#include <torch/optim/adamw.h>

#include <unordered_set>

namespace longhaul::train {

// Runs `optim`'s step at learning rate 0 over the parameters that have a gradient, then puts its
// state back: AdamW at rate 0 leaves a parameter as it was (its decay multiplies by 1, its step
// adds 0 × a finite ratio), and the step count and moments it moved are restored, zeroed for the
// parameters in `fresh` (state made at step 0, zero moments, so nothing is copied) and copied back
// for the others (a resumed run's). The learning rates are restored. Call only with finite
// gradients: a non-finite one would make its parameter NaN. Returns the parameters updated.
int rehearse_update(torch::optim::AdamW& optim, const std::unordered_set<const void*>& fresh);

}  // namespace longhaul::train
