// The fuzz targets that read files: the input written to a file of this process.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/errors.h"

namespace longhaul::fuzz {

inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const char* dir = std::getenv("TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/longhaul_fuzz_" + std::to_string(getpid()) + "_" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs read(path): it succeeds or throws InvalidArgument naming the file; anything else (another
// exception type, a message without the file) aborts, which libFuzzer reports as a finding.
template <typename Read>
void expect_read_or_input_error(const char* target, const std::string& path, Read&& read) {
  try {
    read();
  } catch (const InvalidArgument& e) {
    if (std::string(e.what()).find(path) != std::string::npos) return;
    std::fprintf(stderr, "%s: the error does not name the file: %s\n", target, e.what());
    std::abort();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: unexpected exception: %s\n", target, e.what());
    std::abort();
  }
}

}  // namespace longhaul::fuzz
