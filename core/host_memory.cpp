#include "core/host_memory.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace longhaul {
namespace {

// A limit at or above this is "no limit" (cgroup v1 writes 2^63 rounded down to a page).
constexpr double kUnlimited = 0x1p60;

std::optional<double> number_file(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word)) return std::nullopt;
  if (word == "max") return kUnlimited;  // cgroup v2's "no limit"
  try {
    size_t used = 0;
    const double v = std::stod(word, &used);
    if (used != word.size() || !(v >= 0)) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The value of `key` in a "key value" file (memory.stat), 0 when absent.
double stat_value(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string k;
  double v;
  while (in >> k >> v)
    if (k == key) return v;
  return 0;
}

double mem_available(const std::string& root) {
  std::ifstream in(root + "/proc/meminfo");
  std::string key, unit;
  double kib;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024.0;
  return NAN;
}

struct CgroupMount {
  std::string dir;          // the cgroup's directory (mount point + its path below the mount's root)
  std::string mountpoint;   // the walk up stops here
  std::string path;         // the cgroup's path as /proc/self/cgroup names it
  bool v2 = false;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

// The memory controller's cgroup of this process (v1's memory hierarchy, else v2's unified one)
// and where it is mounted; nullopt when either is missing.
std::optional<CgroupMount> memory_cgroup(const std::string& root) {
  std::optional<std::string> v1, v2;
  {
    std::ifstream in(root + "/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
      if (b == std::string::npos) continue;
      const std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
      if (id == "0" && controllers.empty()) v2 = path;
      for (const std::string& c : split(controllers, ','))
        if (c == "memory") v1 = path;
    }
  }
  std::ifstream in(root + "/proc/self/mountinfo");
  std::string line;
  std::optional<CgroupMount> found;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream head(line.substr(0, dash)), tail(line.substr(dash + 3));
    std::string id, parent, dev, mount_root, mountpoint, fstype, source, super;
    if (!(head >> id >> parent >> dev >> mount_root >> mountpoint) || !(tail >> fstype >> source >> super)) continue;
    const bool is_v1 = fstype == "cgroup" && v1 && [&] {
      for (const std::string& o : split(super, ','))
        if (o == "memory") return true;
      return false;
    }();
    const bool is_v2 = fstype == "cgroup2" && v2;
    if (!is_v1 && !is_v2) continue;
    const std::string& path = is_v1 ? *v1 : *v2;
    // The cgroup must lie below the mount's root (a cgroup namespace mounts its own subtree).
    if (mount_root != "/" && path.compare(0, mount_root.size(), mount_root) != 0) continue;
    const std::string below = mount_root == "/" ? path : path.substr(mount_root.size());
    CgroupMount m{root + mountpoint + (below == "/" ? "" : below), root + mountpoint, path, is_v2};
    if (is_v1) return m;  // v1's memory hierarchy is where a hybrid system accounts memory
    found = m;
  }
  return found;
}

}  // namespace

std::string memory_size(double bytes) {
  if (std::isnan(bytes)) return "? MiB";
  char buf[32];
  if (bytes >= double(1 << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(1 << 30));
  else std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / double(1 << 20));
  return buf;
}

HostMemory host_memory(const std::string& root) {
  HostMemory h;
  h.available_bytes = mem_available(root);
  h.bound = "MemAvailable";
  const std::optional<CgroupMount> cg = memory_cgroup(root);
  if (!cg) return h;
  h.cgroup = cg->path;
  // Every cgroup from this one up to the mount's root bounds it.
  std::string dir = cg->dir, path = cg->path;
  for (;;) {
    const std::optional<double> limit = number_file(dir + (cg->v2 ? "/memory.max" : "/memory.limit_in_bytes"));
    const std::optional<double> usage = number_file(dir + (cg->v2 ? "/memory.current" : "/memory.usage_in_bytes"));
    if (limit && usage && *limit < kUnlimited) {
      const std::string stat = dir + "/memory.stat";
      const double cache = cg->v2 ? stat_value(stat, "active_file") + stat_value(stat, "inactive_file")
                                  : stat_value(stat, "total_active_file") + stat_value(stat, "total_inactive_file");
      const double used = std::fmax(0.0, *usage - cache);
      const double left = std::fmax(0.0, *limit - used);
      if (!(left >= h.available_bytes)) {  // also where MemAvailable is NaN
        h.available_bytes = left;
        h.bound = "the memory cgroup " + (path.empty() ? std::string("/") : path) + ": limit " + memory_size(*limit) +
                  ", " + memory_size(used) + " in use";
      }
    }
    if (dir.size() <= cg->mountpoint.size()) break;
    dir = dir.substr(0, dir.rfind('/'));
    const size_t slash = path.rfind('/');
    path = slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
  }
  return h;
}

}  // namespace longhaul
