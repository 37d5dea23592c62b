#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace longhaul::train {

double learning_rate(const OptimOptions& o, int64_t step) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * double(step + 1) / double(o.warmup);
  const double span = double(std::max<int64_t>(1, o.total_steps - o.warmup));
  const double t = std::min(1.0, double(step - o.warmup) / span);
  const double lo = o.lr * o.min_lr_ratio;
  return lo + 0.5 * (o.lr - lo) * (1.0 + std::cos(M_PI * t));
}

}  // namespace longhaul::train
