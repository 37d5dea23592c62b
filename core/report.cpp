#include "core/report.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace longhaul::report {
namespace {
std::string format(const Value& v, bool json) {
  std::ostringstream os;
  if (auto* i = std::get_if<int64_t>(&v)) {
    os << *i;
  } else if (auto* d = std::get_if<double>(&v)) {
    if (!std::isfinite(*d)) return json ? "null" : "-";
    const double a = std::fabs(*d);
    if (a != 0 && (a < 1e-3 || a >= 1e7))
      os << std::setprecision(4) << *d;
    else
      os << std::fixed << std::setprecision(a < 10 ? 4 : a < 1000 ? 2 : 1) << *d;
  } else {
    const auto& s = std::get<std::string>(v);
    if (!json) return s;
    os << '"';
    for (char c : s) {
      if (c == '"' || c == '\\') os << '\\';
      os << c;
    }
    os << '"';
  }
  return os.str();
}
}  // namespace

const Value* Row::find(const std::string& key) const {
  for (const auto& [k, v] : cells)
    if (k == key) return &v;
  return nullptr;
}

void print_table(std::ostream& os, const std::vector<Row>& rows) {
  if (rows.empty()) return;
  const auto& head = rows.front().cells;
  std::vector<size_t> width(head.size());
  for (size_t c = 0; c < head.size(); ++c) width[c] = head[c].first.size();
  for (const auto& r : rows)
    for (size_t c = 0; c < r.cells.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], format(r.cells[c].second, false).size());
  auto line = [&](auto cell) {
    for (size_t c = 0; c < width.size(); ++c) os << (c ? "  " : "") << std::setw(static_cast<int>(width[c])) << cell(c);
    os << '\n';
  };
  line([&](size_t c) { return head[c].first; });
  for (const auto& r : rows) line([&](size_t c) { return c < r.cells.size() ? format(r.cells[c].second, false) : ""; });
}

void print_json(std::ostream& os, const std::vector<Row>& rows) {
  for (const auto& r : rows) {
    os << '{';
    for (size_t c = 0; c < r.cells.size(); ++c)
      os << (c ? ", " : "") << '"' << r.cells[c].first << "\": " << format(r.cells[c].second, true);
    os << "}\n";
  }
}

void print_csv(std::ostream& os, const std::vector<Row>& rows, bool header) {
  if (rows.empty()) return;
  auto quoted = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  if (header) {
    const auto& head = rows.front().cells;
    for (size_t c = 0; c < head.size(); ++c) os << (c ? "," : "") << quoted(head[c].first);
    os << '\n';
  }
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.cells.size(); ++c) {
      const auto* d = std::get_if<double>(&r.cells[c].second);
      os << (c ? "," : "") << (d && !std::isfinite(*d) ? std::string() : quoted(format(r.cells[c].second, false)));
    }
    os << '\n';
  }
}

void print_rows(std::ostream& os, const std::vector<Row>& rows, bool json) {
  json ? print_json(os, rows) : print_table(os, rows);
}

void print_rows(std::ostream& os, const std::vector<Row>& rows, Format format) {
  if (format == Format::Csv) return print_csv(os, rows);
  print_rows(os, rows, format == Format::Json);
}

double median(std::vector<double> xs) {
  if (xs.empty()) return NAN;
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  return n % 2 ? xs[n / 2] : 0.5 * (xs[n / 2 - 1] + xs[n / 2]);
}

}  // namespace longhaul::report
