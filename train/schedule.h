// Learning rate: linear warm-up over `warmup` steps, then a cosine from lr down to
// lr · min_lr_ratio at total_steps (flat after).
#pragma once

#include <cstdint>

#include "train/options.h"

namespace longhaul::train {

double learning_rate(const OptimOptions& o, int64_t step);  // step: 0-based

}  // namespace longhaul::train
