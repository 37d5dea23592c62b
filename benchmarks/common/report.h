// The benchmarks' names for the tool's row printer (core/report.h).
#pragma once

#include "core/report.h"

namespace longhaul::bench {
using report::median;
using report::print_json;
using report::print_rows;
using report::print_table;
using report::print_csv;
using report::Format;
using report::Row;
using report::Value;

// Sum of the rows' `wrong` column (rows without it, or with -1 = not checked, add nothing).
inline int64_t total_wrong(const std::vector<Row>& rows) {
  int64_t wrong = 0;
  for (const auto& r : rows)
    if (auto* w = r.find("wrong"))
      if (auto* i = std::get_if<int64_t>(w); i && *i > 0) wrong += *i;
  return wrong;
}
}  // namespace longhaul::bench
