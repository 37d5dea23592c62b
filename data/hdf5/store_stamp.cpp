#include "data/hdf5/store_stamp.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

#include "data/files.h"

namespace longhaul::data {
namespace {

// "dev ino size mtime_ns" of the file now; empty when it cannot be read.
std::string identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  std::ostringstream s;
  s << st.st_dev << ' ' << st.st_ino << ' ' << st.st_size << ' '
    << static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return s.str();
}

std::string stamp_path(const std::string& path) {
  char buf[PATH_MAX];
  const std::string abs = ::realpath(path.c_str(), buf) ? std::string(buf) : path;
  std::ostringstream name;
  name << std::hex << std::hash<std::string>{}(abs) << '-' << files::file_name(abs) << ".stamp";
  return files::join(store_stamp_dir(), name.str());
}

}  // namespace

std::string store_stamp_dir() {
  std::string base;
  if (const char* d = std::getenv("LONGHAUL_CACHE_DIR"); d && *d) base = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) base = files::join(x, "longhaul");
  else if (const char* h = std::getenv("HOME"); h && *h) base = files::join(files::join(h, ".cache"), "longhaul");
  else base = "/tmp/longhaul-cache";
  return files::join(base, "verified-stores");
}

bool store_stamp_matches(const std::string& path) {
  const std::string id = identity(path);
  if (id.empty()) return false;
  std::ifstream in(stamp_path(path));
  std::string line;
  return in && std::getline(in, line) && line == id;
}

void stamp_store(const std::string& path) {
  try {
    const std::string id = identity(path);
    if (id.empty()) return;
    files::create_directories(store_stamp_dir());
    const std::string target = stamp_path(path), tmp = target + ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << id << '\n';
      if (!out) {
        files::remove(tmp);
        return;
      }
    }
    if (files::rename(tmp, target) != 0) files::remove(tmp);  // ranks racing: the last rename wins, all equal
  } catch (...) {
  }
}

}  // namespace longhaul::data
