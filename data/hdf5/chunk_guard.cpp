#include "data/hdf5/chunk_guard.h"

#include <algorithm>
#include <utility>

#include "data/hdf5/check.h"

namespace longhaul::data {

ChunkGuard::ChunkGuard(hsize_t file_bytes, hid_t dset, size_t elem, std::string what)
    : file_bytes_(file_bytes), what_(std::move(what)) {
  h5::Handle dcpl(LH_CHECK_HDF5(H5Dget_create_plist(dset), what_), H5Pclose);
  if (H5Pget_layout(dcpl) != H5D_CHUNKED) return;
  LH_CHECK(H5Pget_chunk(dcpl, 1, &chunk_) == 1 && chunk_ >= 1, what_, ": a chunk shape that is not one positive length");
  chunk_bytes_ = chunk_ * elem;
  const int n = LH_CHECK_HDF5(H5Pget_nfilters(dcpl), what_);
  for (int i = 0; i < n; ++i) {
    // Only the filters token stores use: libhdf5's other decoders (nbit, scale-offset, szip)
    // trust their parameters, and a corrupt pipeline message that names one of them crashed
    // libhdf5 1.14.6 (nbit, a null pointer).
    unsigned flags = 0, config = 0, values[8] = {};
    size_t n_values = 8;
    char filter_name[64] = {};
    const H5Z_filter_t id = LH_CHECK_HDF5(
        H5Pget_filter2(dcpl, unsigned(i), &flags, &n_values, values, sizeof filter_name, filter_name, &config), what_,
        ": filter ", i);
    LH_CHECK(id == H5Z_FILTER_DEFLATE || id == H5Z_FILTER_SHUFFLE || id == H5Z_FILTER_FLETCHER32, what_, ": filter ", i,
             " has id ", id, " (named '", filter_name, "' in the file); a token store's chunks use deflate (1), ",
             "shuffle (2) and Fletcher-32 (3) only");
    // Shuffle's one parameter is the element size it un-shuffles by (HDF5 sets it from the type).
    LH_CHECK(id != H5Z_FILTER_SHUFFLE || (n_values >= 1 && values[0] == elem), what_, ": the shuffle filter's element ",
             "size is ", n_values >= 1 ? int64_t(values[0]) : int64_t(-1), ", the dataset's is ", elem);
    filters_.push_back(id);
  }
#if H5_VERSION_GE(1, 14, 0)
  // One pass over the whole chunk index. A corrupt index can list a chunk twice with different
  // fields, and which record a read finds depends on the search: so every record is checked, and
  // the records must come in strictly increasing order, as every 1-D chunk index keeps them.
  std::vector<Record> records;
  auto collect = [](const hsize_t* offset, unsigned skipped, haddr_t addr, hsize_t size, void* out) -> int {
    static_cast<std::vector<Record>*>(out)->push_back({offset[0], skipped, addr, size});
    return 0;
  };
  LH_CHECK_HDF5(H5Dchunk_iter(dset, H5P_DEFAULT, collect, &records), what_, ": its chunk index");
  h5::Handle space(LH_CHECK_HDF5(H5Dget_space(dset), what_), H5Sclose);
  hsize_t length = 0;
  H5Sget_simple_extent_dims(space, &length, nullptr);
  const hsize_t expected = (length + chunk_ - 1) / chunk_;
  LH_CHECK(records.size() == expected, what_, ": the chunk index lists ", records.size(), " chunks, its ", length,
           " entries fill ", expected, " (a corrupt chunk index: a missing chunk would read as zeros)");
  for (size_t i = 0; i < records.size(); ++i) {
    LH_CHECK(records[i].offset % chunk_ == 0, what_, ": the chunk index lists a chunk at entry ", records[i].offset,
             ", not a multiple of the chunk's ", chunk_, " entries (a corrupt chunk index)");
    LH_CHECK(i == 0 || records[i].offset > records[i - 1].offset, what_, ": the chunk index lists the chunk at entry ",
             records[i].offset, " after the one at entry ", records[i - 1].offset, " (a corrupt chunk index)");
    check_record(records[i]);
  }
  whole_index_checked_ = true;
#endif
}

void ChunkGuard::check(hid_t dset, int64_t begin, int64_t count) const {
  if (chunk_ == 0 || count <= 0 || whole_index_checked_) return;
  const hsize_t first = hsize_t(begin) / chunk_, last = hsize_t(begin + count - 1) / chunk_;
  for (hsize_t c = first; c <= last; ++c) {
    Record r{c * chunk_, 0, HADDR_UNDEF, 0};
    LH_CHECK_HDF5(H5Dget_chunk_info_by_coord(dset, &r.offset, &r.skipped, &r.addr, &r.size), what_,
                  ": the chunk at entry ", r.offset);
    check_record(r);
  }
}

void ChunkGuard::check_record(const Record& r) const {
  // A store's writer writes every chunk of its length: one missing from the index (a corrupt
  // index record) would read as HDF5's fill value, zeros that are valid tokens.
  LH_CHECK(r.addr != HADDR_UNDEF, what_, ": the chunk at entry ", r.offset,
           " is missing from the chunk index (a corrupt chunk index: it would read as zeros)");
  LH_CHECK(r.addr <= file_bytes_ && r.size <= file_bytes_ - r.addr, what_, ": the chunk at entry ", r.offset,
           " declares bytes [", r.addr, ", ", r.addr + r.size, ") of a ", file_bytes_,
           "-byte file (a corrupt chunk index)");
  // Shuffle keeps a chunk's size and Fletcher-32 adds its 4 bytes, so a chunk whose filters are
  // only those (none, in a plain store) is stored at exactly that size; HDF5 copies the chunk's
  // full size out of what it read. Behind a compressing filter the size is not known before
  // decompressing: only the checksum's 4 bytes must be there.
  bool compressed = false;
  hsize_t checksums = 0;
  for (size_t i = 0; i < filters_.size(); ++i) {
    if (i < 32 && (r.skipped >> i) & 1u) continue;
    if (filters_[i] == H5Z_FILTER_FLETCHER32)
      ++checksums;
    else if (filters_[i] != H5Z_FILTER_SHUFFLE)
      compressed = true;
  }
  if (!compressed)
    LH_CHECK(r.size == chunk_bytes_ + 4 * checksums, what_, ": the chunk at entry ", r.offset, " stores ", r.size,
             " bytes, expected ", chunk_bytes_ + 4 * checksums, " (", chunk_bytes_, " of data",
             checksums ? " and a Fletcher-32 checksum" : "", ", uncompressed; a corrupt chunk index)");
  else
    LH_CHECK(r.size >= std::max<hsize_t>(1, 4 * checksums), what_, ": the compressed chunk at entry ", r.offset,
             " stores ", r.size, " bytes, too few to hold ", checksums ? "its Fletcher-32 checksum" : "any data",
             " (a corrupt chunk index)");
}

}  // namespace longhaul::data
