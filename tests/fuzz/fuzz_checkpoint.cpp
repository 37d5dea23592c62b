// libFuzzer target: the checkpoint reader on arbitrary file bytes. Anything but a valid file is
// InvalidArgument naming the file; any other exception, a crash or a huge allocation is a
// finding. The checksum would stop almost every mutation before the records, so an input whose
// first byte is odd is taken as the records alone and wrapped with a correct header and checksum.
#include <string>

#include "core/fnv1a.h"
#include "train/checkpoint.h"
#include "tests/fuzz/fuzz_file.h"

namespace {

uint64_t fnv1a(const std::string& s) { return longhaul::Fnv1a().text(s).value(); }

// "LHCKPT01", total bytes, the records, the FNV-1a hash of all before it (train/checkpoint.h).
std::string wrapped(const uint8_t* data, size_t size) {
  std::string out = "LHCKPT01";
  const uint64_t total = 16 + size + 8;
  out.append(reinterpret_cast<const char*>(&total), 8);
  out.append(reinterpret_cast<const char*>(data), size);
  const uint64_t h = fnv1a(out);
  out.append(reinterpret_cast<const char*>(&h), 8);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path;
  if (size > 0 && (data[0] & 1)) {
    const std::string file = wrapped(data + 1, size - 1);
    path = longhaul::fuzz::write_input("checkpoint", reinterpret_cast<const uint8_t*>(file.data()), file.size());
  } else {
    path = longhaul::fuzz::write_input("checkpoint", data, size);
  }
  longhaul::fuzz::expect_read_or_input_error("fuzz_checkpoint", path, [&] {
    const auto c = longhaul::train::read_checkpoint(path);
    for (const auto& [name, t] : c.tensors) (void)t.numel();
  });
  return 0;
}
