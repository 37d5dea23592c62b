// The configuration columns every context-parallel benchmark row starts with (bench cp, long,
// cp-gpu), so the tables line up and are parsed alike.
#pragma once

#include <cstdint>
#include <string>

#include "benchmarks/common/report.h"

namespace longhaul::bench {

inline Row cp_config_row(const std::string& strategy, const std::string& layout, const std::string& mask, int64_t t,
                         int p, int64_t h, int64_t h_kv, int64_t d) {
  return Row()
      .add("strategy", strategy)
      .add("layout", layout)
      .add("mask", mask)
      .add("T", t)
      .add("P", int64_t(p))
      .add("H", h)
      .add("H_kv", h_kv)
      .add("D", d);
}

}  // namespace longhaul::bench
