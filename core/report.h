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
// RFC 4180 CSV: a header line (the first row's keys), then one line per row; empty for NaN.
void print_csv(std::ostream& os, const std::vector<Row>& rows, bool header = true);
// Table or JSON lines.
void print_rows(std::ostream& os, const std::vector<Row>& rows, bool json);

enum class Format { Table, Json, Csv };
void print_rows(std::ostream& os, const std::vector<Row>& rows, Format format);

// Median of a sample (copied: the input order is kept).
double median(std::vector<double> xs);

}  // namespace longhaul::report
