#include "cli/output_check.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

namespace longhaul::cli {
namespace {
bool failed = false;
}  // namespace

bool flush_stdout(const std::string& where) {
  errno = 0;
  std::cout.flush();
  const bool ok = std::cout.good() && std::fflush(stdout) == 0 && !std::ferror(stdout);
  if (ok || failed) return ok;
  const int e = errno;
  failed = true;
  std::cerr << "longhaul: warning: writing the standard output failed at " << where << " ("
            << (e ? std::strerror(e) : "an earlier write failed")
            << "): that line and later ones are lost; the command goes on and will exit with status 1" << std::endl;
  return false;
}

int checked_exit(const std::string& command, int rc) {
  if (flush_stdout("the end of `longhaul " + command + "`") && !failed) return rc;
  std::cerr << "longhaul " << command << ": error: its standard output is incomplete (a write failed: see above)"
            << std::endl;
  return rc == 0 ? 1 : rc;
}

}  // namespace longhaul::cli
