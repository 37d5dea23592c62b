// Rows of named values printed as a fixed-width table or as JSON lines (one object per row, keys =
// the column names): every table the `longhaul` tool prints (bench, train, plan, prep, info).
#pragma once

#include <ostream>
#include <string>
#include <variant>
#include <vector>

namespace longhaul::report {

using Value = std::variant<int64_t, double, std::string>;

struct Row {
  std::vector<std::pair<std::string, Value>> cells;
  Row& add(const std::string& key, Value v) {
    cells.emplace_back(key, std::move(v));
    return *this;
  }
  const Value* find(const std::string& key) const;
};

void print_table(std::ostream& os, const std::vector<Row>& rows);
void print_json(std::ostream& os, const std::vector<Row>& rows);
// Table or JSON lines.
void print_rows(std::ostream& os, const std::vector<Row>& rows, bool json);

// Median of a sample (copied: the input order is kept).
double median(std::vector<double> xs);

}  // namespace longhaul::report
