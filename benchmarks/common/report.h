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
}  // namespace longhaul::bench
