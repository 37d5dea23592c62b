// Checks of what a chunked 1-D dataset declares about each of its chunks, made before libhdf5
// reads them. libhdf5 (Debian 12's 1.10.8 and 1.14.6 alike) sizes its buffers from a chunk's
// stored size and trusts it: a chunk stored shorter than its declared shape is read past the end
// of its buffer, a Fletcher-32 chunk of fewer than 4 bytes makes the checksum run over 2^64
// bytes, a chunk beyond the end of the file is allocated before the read fails. The in-process
// token-store fuzz target found each of these in libhdf5 1.14.6. A chunk whose fields cannot be
// true is refused as InvalidArgument instead, and so is a chunk missing from the index (a store's
// writer writes them all; HDF5 would read a missing one as zeros, which are valid tokens); what it holds is left to HDF5's filters, which must
// be deflate, shuffle and Fletcher-32 (every store `longhaul prep` writes carries the checksum):
// libhdf5's other decoders trust their parameters.
// With libhdf5 >= 1.14 the whole chunk index is checked once, when the guard is made (records in
// order, none twice: a corrupt index listed one chunk three times). libhdf5 1.10 has no single
// pass over the index, so there each chunk is checked before each read that touches it, by its
// coordinate; a store from elsewhere is read in a verifying child first anyway (store_verify.h).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace longhaul::data {

class ChunkGuard {
 public:
  ChunkGuard() = default;
  // `what` names the dataset in errors ("token store 'F': /tokens"); elem: its element size;
  // file_bytes: the size of the file that holds it.
  ChunkGuard(hsize_t file_bytes, hid_t dset, size_t elem, std::string what);
  // Checks every allocated chunk that entries [begin, begin + count) of `dset` lie in (the same
  // dataset, or the same one reopened). Nothing for a dataset that is not chunked, or whose whole
  // index was checked already.
  void check(hid_t dset, int64_t begin, int64_t count) const;

 private:
  struct Record {
    hsize_t offset;
    unsigned skipped;  // bit i: filter i was not applied to this chunk
    haddr_t addr;
    hsize_t size;
  };
  void check_record(const Record& r) const;
  bool whole_index_checked_ = false;
  hsize_t chunk_ = 0;  // entries per chunk; 0: not chunked
  hsize_t chunk_bytes_ = 0, file_bytes_ = 0;
  std::vector<H5Z_filter_t> filters_;  // the pipeline, in order (bit i of a chunk's mask skips filter i)
  std::string what_;
};

}  // namespace longhaul::data
