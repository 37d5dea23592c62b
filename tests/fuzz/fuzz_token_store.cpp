// libFuzzer target: the HDF5 token-store reader on arbitrary file bytes (seeds: real stores, so
// mutations land inside valid HDF5 structure). Opening and reading every document either works
// or throws InvalidArgument naming the file; any other exception or a crash is a finding.
// Built twice: fuzz_token_store reads in this process (it finds libhdf5's own memory errors too,
// docs/errors.md), fuzz_token_store_verified (LONGHAUL_FUZZ_VERIFY) opens with
// StoreReaderOptions::verify, the path for stores from elsewhere, where a crash inside libhdf5
// happens in the verifying child and must come back as InvalidArgument.
#include <pthread.h>
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <string>

#include "data/hdf5/store_reader.h"
#include "tests/fuzz/fuzz_file.h"

#if LONGHAUL_FUZZ_VERIFY
namespace {
// The verifying child is a fork of this fuzzer: its sanitizer report must end the child only,
// not run libFuzzer's death callback (which would save the input as this process's crash).
void child_dies_alone() {
  __sanitizer_set_death_callback([] { ::_exit(1); });
}
const int registered = pthread_atfork(nullptr, nullptr, child_dies_alone);
}  // namespace
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = longhaul::fuzz::write_input("store.h5", data, size);
  longhaul::fuzz::expect_read_or_input_error("fuzz_token_store", path, [&] {
    longhaul::data::StoreReaderOptions options;
    // Always, not Once: no stamp per input in the cache.
    options.verify = LONGHAUL_FUZZ_VERIFY ? longhaul::data::StoreVerify::Always : longhaul::data::StoreVerify::Never;
    options.verify_options.deadline_s = 15;  // under libFuzzer's -timeout (20 s): a stuck read is refused, as in use
    options.verify_options.memory_budget_bytes = int64_t(1) << 30;  // a looping child fails in a second, not 8 GiB later
    longhaul::data::TokenStoreReader reader(path, options);
    const int64_t docs = int64_t(reader.doc_offsets().size()) - 1;
    // A valid store may hold huge documents (a mutated size field declares billions of tokens):
    // reading those is not a finding, only slow. Read the first small ones.
    for (int64_t d = 0; d < docs && d < 64; ++d)
      if (reader.doc_length(d) <= (int64_t(1) << 16)) (void)reader.document(d);
  });
  return 0;
}
