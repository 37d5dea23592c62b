// Verifies a token store that may be corrupt or crafted, in a child process. libhdf5 itself
// (1.10.8 on Debian 12, the version this project builds against) still has memory errors on some
// crafted files: out-of-bounds reads and writes inside its object-header and chunk decoders
// (libFuzzer finds them in minutes; docs/errors.md). No check of ours can run before them, so the
// file is read once, whole, in a forked child: a crash there kills only the child, and the caller
// gets an InvalidArgument naming the file and how the read died. The parent then opens the file
// itself with the same library calls the child survived.
#pragma once

#include <string>

namespace longhaul::data {

// When a reader verifies a store before opening it (StoreReaderOptions::verify):
//   Never   trust the file (stores this process just wrote, in-process fuzzing of the reader);
//   Once    the default: verify unless this very file was verified, or written by `longhaul
//           prep`, on this machine before (a stamp, data/hdf5/store_stamp.h), and stamp it after;
//   Always  verify at every open.
enum class StoreVerify { Never, Once, Always };

struct StoreVerifyOptions {
  // A child that has not finished within this many seconds is killed and the store refused
  // (HDF5 looping on a corrupt structure). Reading runs at disk speed: allow for the file size.
  double deadline_s = 600;
  // Memory the child may allocate beyond what it inherits (RLIMIT_DATA over its own start; 0: no
  // limit). libhdf5 1.14.6 loops allocating on a corrupt local-heap free list (2 GiB in 7 s):
  // without a budget such a file would take the machine's memory before the deadline. Reading a
  // store needs its document offsets (8 bytes per document), HDF5's chunk cache and 4 MiB.
  int64_t memory_budget_bytes = int64_t(8) << 30;
};

// Opens `path` as a token store and reads every token (each checked < vocab_size) in a forked
// child. Returns normally if the child found nothing wrong; throws InvalidArgument naming the file
// otherwise: the reader's own message, "the HDF5 library crashed reading it (signal ...)", a
// failing exit status, or the deadline. Fork it before starting threads that call HDF5 (the child
// inherits the library's state as it was).
void verify_store_in_child(const std::string& path, StoreVerifyOptions options = {});

}  // namespace longhaul::data
