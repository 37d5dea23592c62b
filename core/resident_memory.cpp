#include "core/resident_memory.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "core/host_memory.h"

namespace longhaul {

double process_status_bytes(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size() + 1, key + ":") != 0) continue;
    std::istringstream fields(line.substr(key.size() + 1));
    double kib = NAN;
    fields >> kib;
    return kib * 1024.0;
  }
  return NAN;
}

namespace {
double status_mib(const std::string& key) { return process_status_bytes(key) / double(1 << 20); }

bool reset_peak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}
}  // namespace

PeakRssGrowth::PeakRssGrowth() {
  reset_ = reset_peak();
  rss_before_mib_ = status_mib("VmRSS");
  hwm_before_mib_ = status_mib("VmHWM");
}

double PeakRssGrowth::mib() const {
  const double hwm = status_mib("VmHWM");
  if (std::isnan(hwm)) return NAN;
  return std::fmax(0.0, hwm - (reset_ ? rss_before_mib_ : hwm_before_mib_));
}

double available_memory_bytes() { return host_memory().available_bytes; }

}  // namespace longhaul
