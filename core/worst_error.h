// The larger of two errors, NaN if either is NaN. std::max(a, b) returns a when b is NaN (NaN
// compares false), so folding errors with it reports a NaN result as exact.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

namespace longhaul {

inline double worst_error(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? std::numeric_limits<double>::quiet_NaN() : std::max(a, b);
}

}  // namespace longhaul
