// libFuzzer target: the HDF5 token-store reader on arbitrary file bytes (seeds: real stores, so
// mutations land inside valid HDF5 structure). Opening and reading every document either works
// or throws InvalidArgument naming the file; any other exception or a crash is a finding.
#include <string>

#include "data/hdf5/store_reader.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = longhaul::fuzz::write_input("store.h5", data, size);
  longhaul::fuzz::expect_read_or_input_error("fuzz_token_store", path, [&] {
    longhaul::data::TokenStoreReader reader(path);
    const int64_t docs = int64_t(reader.doc_offsets().size()) - 1;
    // A valid store may hold huge documents (a mutated size field declares billions of tokens):
    // reading those is not a finding, only slow. Read the first small ones.
    for (int64_t d = 0; d < docs && d < 64; ++d)
      if (reader.doc_length(d) <= (int64_t(1) << 16)) (void)reader.document(d);
  });
  return 0;
}
