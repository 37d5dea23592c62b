#include "data/hdf5/store_reader.h"
#include "data/hdf5/store_stamp.h"

#include <algorithm>

#include "data/files.h"
#include "data/format.h"
#include "data/hdf5/check.h"
#include "data/hdf5/chunk_guard.h"

namespace longhaul::data {

struct TokenStoreReader::Files {
  h5::Handle file, tokens, tokens_space;
  ChunkGuard tokens_chunks;
};

namespace {

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

// An attribute that must exist, hold one value and be of `cls` (what: "a string", noun: "string").
struct ScalarAttr {
  h5::Handle attr, type;
};
ScalarAttr open_scalar_attr(hid_t obj, const char* name, H5T_class_t cls, const char* what, const char* noun,
                            const std::string& ctx) {
  LH_CHECK(has_attr(obj, name), ctx, ": attribute '", name, "' is missing (expected ", what, ")");
  h5::Handle attr(LH_CHECK_HDF5(H5Aopen(obj, name, H5P_DEFAULT), ctx), H5Aclose);
  h5::Handle type(LH_CHECK_HDF5(H5Aget_type(attr), ctx), H5Tclose);
  LH_CHECK(H5Tget_class(type) == cls, ctx, ": attribute '", name, "' is not ", what);
  h5::Handle space(LH_CHECK_HDF5(H5Aget_space(attr), ctx), H5Sclose);
  LH_CHECK(H5Sget_simple_extent_npoints(space) == 1, ctx, ": attribute '", name, "' should be one ", noun);
  return {std::move(attr), std::move(type)};
}

// Deflate's largest expansion of stored bytes (its format's limit is 1032:1), with a margin.
constexpr double kMaxDeflateRatio = 1100.0;

// Longest string attribute a store holds (format and tokenizer names).
constexpr size_t kMaxStringAttr = 4096;

std::string read_string_attr(hid_t obj, const char* name, const std::string& ctx) {
  const ScalarAttr a = open_scalar_attr(obj, name, H5T_STRING, "a string", "string", ctx);
  // Never read a variable-length string: its bytes come from the global heap, and libhdf5 1.10
  // crashes on a corrupt reference there (data/format.h).
  LH_CHECK(H5Tis_variable_str(a.type) == 0, ctx, ": attribute '", name,
           "' is a variable-length string; this build reads format version ", kFormatVersion,
           ", whose strings have fixed length (a store of version 1 must be written again with `longhaul prep`)");
  const size_t n = H5Tget_size(a.type);
  LH_CHECK(n >= 1 && n <= kMaxStringAttr, ctx, ": attribute '", name, "' is a string of ", n,
           " bytes, expected 1 to ", kMaxStringAttr);
  std::string out(n, '\0');
  LH_CHECK_HDF5(H5Aread(a.attr, a.type, out.data()), ctx, ": attribute ", name);
  out.resize(std::find(out.begin(), out.end(), '\0') - out.begin());
  while (!out.empty() && out.back() == ' ') out.pop_back();  // space-padded fixed strings
  return out;
}

int64_t read_int_attr(hid_t obj, const char* name, const std::string& ctx) {
  const ScalarAttr a = open_scalar_attr(obj, name, H5T_INTEGER, "an integer", "integer", ctx);
  int64_t v = 0;
  LH_CHECK_HDF5(H5Aread(a.attr, H5T_NATIVE_INT64, &v), ctx, ": attribute ", name);
  return v;
}

// What a dataset declares about its bytes in the file, checked before HDF5 reads or allocates
// anything for it (each chunk's own fields: ChunkGuard, before each read).
void check_stored_bytes(hsize_t file_bytes, hid_t d, const char* name, size_t elem, hsize_t n, const std::string& ctx) {
  // A dataset's stored bytes are part of the file; more is a corrupt chunk index (HDF5 allocates a
  // chunk's declared size before it reads it: a mutated size field asked for 4 GiB in a 6 KB file).
  const hsize_t stored = H5Dget_storage_size(d);
  LH_CHECK(stored <= file_bytes, ctx, ": /", name, " declares ", stored, " stored bytes, more than the file's ",
           file_bytes, " (a corrupt chunk index)");
  // The length is bounded by the stored bytes: deflate expands at most 1032× (its format's limit),
  // so a longer one is a corrupt header, refused before anything is allocated for it (a mutated
  // extent declared 2^62 offsets).
  const double most =
      (static_cast<double>(stored) * kMaxDeflateRatio + 65536.0) / static_cast<double>(std::max<size_t>(elem, 1));
  LH_CHECK(static_cast<double>(n) <= most, ctx, ": /", name, " declares ", n, " entries but holds ", stored,
           " bytes in the file (a corrupt dataset header or chunk index)");
}

// Opens a 1-D unsigned integer dataset; returns its element size and length.
h5::Handle open_1d(hid_t file, hsize_t file_bytes, const char* name, const std::string& ctx, size_t& elem,
                   int64_t& length) {
  LH_CHECK(H5Lexists(file, name, H5P_DEFAULT) > 0, ctx, ": dataset /", name, " is missing");
  h5::Handle d(LH_CHECK_HDF5(H5Dopen2(file, name, H5P_DEFAULT), ctx, ": /", name), H5Dclose);
  h5::Handle type(LH_CHECK_HDF5(H5Dget_type(d), ctx), H5Tclose);
  h5::Handle space(LH_CHECK_HDF5(H5Dget_space(d), ctx), H5Sclose);
  elem = H5Tget_size(type);
  LH_CHECK(H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_NONE, ctx, ": /", name,
           " must hold unsigned integers");
  // The writer stores little-endian integers with no padding: another order or precision here is
  // a corrupt datatype message that HDF5 would convert from silently.
  LH_CHECK(H5Tget_order(type) == H5T_ORDER_LE && H5Tget_precision(type) == 8 * elem && H5Tget_offset(type) == 0, ctx,
           ": /", name, " holds integers that are not little-endian ", 8 * elem,
           "-bit ones (a corrupt datatype message)");
  LH_CHECK(H5Sget_simple_extent_ndims(space) == 1, ctx, ": /", name, " must be one-dimensional, has ",
           H5Sget_simple_extent_ndims(space), " dimensions");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  check_stored_bytes(file_bytes, d, name, elem, n, ctx);
  length = static_cast<int64_t>(n);
  return d;
}

void read_1d(hid_t dset, hid_t space, const ChunkGuard& guard, hid_t mem_type, int64_t begin, int64_t count, void* out,
             const std::string& ctx) {
  guard.check(dset, begin, count);
  const hsize_t start = static_cast<hsize_t>(begin), n = static_cast<hsize_t>(count);
  LH_CHECK_HDF5(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr), ctx);
  h5::Handle mspace(LH_CHECK_HDF5(H5Screate_simple(1, &n, nullptr), ctx), H5Sclose);
  LH_CHECK_HDF5(H5Dread(dset, mem_type, mspace, space, H5P_DEFAULT, out), ctx);
}

}  // namespace

// HDF5 failures while reading a store are about the user's file, like every other check here:
// InvalidArgument (with the file, the call and HDF5's reason), one type for any corruption.
[[noreturn]] static void rethrow_as_input_error() {
  try {
    throw;
  } catch (const InvalidArgument&) {
    throw;
  } catch (const Error& e) {
    throw InvalidArgument(e.what());
  }
}

TokenStoreReader::TokenStoreReader(const std::string& path, StoreReaderOptions opt) try
    : h_(std::make_unique<Files>()), path_(path) {
  h5::quiet();
  const std::string ctx = "token store '" + path + "'";
  LH_CHECK(!files::is_directory(path), ctx, ": is a directory, expected a token store file (longhaul prep writes one)");
  LH_CHECK(files::is_regular_file(path), ctx, ": no such file");
  if (opt.verify == StoreVerify::Always || (opt.verify == StoreVerify::Once && !store_stamp_matches(path))) {
    verify_store_in_child(path, opt.verify_options);
    if (opt.verify == StoreVerify::Once) stamp_store(path);
  }
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_h5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
#endif
  LH_CHECK(is_h5 > 0, ctx, ": not an HDF5 file (corrupt, truncated or another format); expected a file written by "
                           "`longhaul prep`");
  h_->file = h5::Handle(LH_CHECK_HDF5(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), ctx,
                                      ": HDF5 cannot open it (corrupt or truncated?)"),
                        H5Fclose);
  const std::string format = read_string_attr(h_->file, "format", ctx);
  LH_CHECK(format == kFormatName, ctx, ": format attribute is '", format, "', expected '", kFormatName, "'");
  const int64_t version = read_int_attr(h_->file, "version", ctx);
  LH_CHECK(version == kFormatVersion, ctx, ": format version ", version, " is not supported; this build reads version ",
           kFormatVersion);
  tokenizer_ = read_string_attr(h_->file, "tokenizer", ctx);
  vocab_ = read_int_attr(h_->file, "vocab_size", ctx);
  eos_ = read_int_attr(h_->file, "eos_id", ctx);
  LH_CHECK(vocab_ >= 1 && vocab_ <= (int64_t(1) << 31), ctx, ": vocab_size ", vocab_, " outside [1, 2^31]");
  LH_CHECK(eos_ >= 0 && eos_ < vocab_, ctx, ": eos_id ", eos_, " outside [0, vocab_size = ", vocab_, ")");

  size_t tok_elem = 0, off_elem = 0;
  int64_t n_tokens = 0, n_offsets = 0;
  hsize_t file_bytes = 0;
  LH_CHECK_HDF5(H5Fget_filesize(h_->file, &file_bytes), ctx);
  h_->tokens = open_1d(h_->file, file_bytes, kTokensDataset, ctx, tok_elem, n_tokens);
  LH_CHECK(tok_elem == 2 || tok_elem == 4, ctx, ": /tokens holds ", tok_elem, "-byte integers, expected uint16 or uint32");
  LH_CHECK(tok_elem == 4 || vocab_ <= kMaxUint16Vocab, ctx, ": /tokens is uint16 but vocab_size is ", vocab_,
           " (> 65536 needs uint32)");
  token_bytes_ = static_cast<int>(tok_elem);
  h5::Handle off = open_1d(h_->file, file_bytes, kOffsetsDataset, ctx, off_elem, n_offsets);
  LH_CHECK(off_elem == 8, ctx, ": /doc_offsets holds ", off_elem, "-byte integers, expected uint64");
  LH_CHECK(n_offsets >= 1, ctx, ": /doc_offsets is empty, expected n_docs + 1 entries starting with 0");
  offsets_.resize(static_cast<size_t>(n_offsets));
  h5::Handle off_space(LH_CHECK_HDF5(H5Dget_space(off), ctx), H5Sclose);
  const ChunkGuard off_chunks(file_bytes, off, off_elem, ctx + ": /" + kOffsetsDataset);
  read_1d(off, off_space, off_chunks, H5T_NATIVE_UINT64, 0, n_offsets, offsets_.data(), ctx + ": reading /doc_offsets");
  LH_CHECK(offsets_[0] == 0, ctx, ": doc_offsets[0] = ", offsets_[0], ", expected 0");
  for (size_t d = 0; d + 1 < offsets_.size(); ++d)
    LH_CHECK(offsets_[d + 1] >= offsets_[d], ctx, ": doc_offsets decrease at document ", d, " (", offsets_[d],
             " then ", offsets_[d + 1], ")");
  LH_CHECK(offsets_.back() == static_cast<uint64_t>(n_tokens), ctx, ": doc_offsets end at ", offsets_.back(),
           " but /tokens holds ", n_tokens, " tokens");

  // Reopen /tokens with a chunk cache sized for random access (slots: a prime well above the
  // number of chunks the cache holds).
  h_->tokens.reset();
  h5::Handle dapl(LH_CHECK_HDF5(H5Pcreate(H5P_DATASET_ACCESS), ctx), H5Pclose);
  LH_CHECK_HDF5(H5Pset_chunk_cache(dapl, 100003, opt.chunk_cache_bytes, 0.75), ctx);
  h_->tokens = h5::Handle(LH_CHECK_HDF5(H5Dopen2(h_->file, kTokensDataset, dapl), ctx), H5Dclose);
  h_->tokens_space = h5::Handle(LH_CHECK_HDF5(H5Dget_space(h_->tokens), ctx), H5Sclose);
  h_->tokens_chunks = ChunkGuard(file_bytes, h_->tokens, tok_elem, ctx + ": /" + kTokensDataset);
} catch (...) {
  rethrow_as_input_error();
}

TokenStoreReader::~TokenStoreReader() = default;

void TokenStoreReader::read(int64_t begin, int64_t count, int32_t* out) {
  LH_CHECK(begin >= 0 && count >= 0 && begin + count <= num_tokens(), "token store '", path_, "': range [", begin, ", ",
           begin + count, ") outside its ", num_tokens(), " tokens");
  if (count == 0) return;
  h5::quiet();
  const std::string ctx = "token store '" + path_ + "': reading tokens";
  try {
    if (token_bytes_ == 2) {
      narrow_.resize(static_cast<size_t>(count));
      read_1d(h_->tokens, h_->tokens_space, h_->tokens_chunks, H5T_NATIVE_UINT16, begin, count, narrow_.data(), ctx);
      std::copy(narrow_.begin(), narrow_.end(), out);
    } else {  // vocab <= 2^31: every id fits int32
      read_1d(h_->tokens, h_->tokens_space, h_->tokens_chunks, H5T_NATIVE_UINT32, begin, count, out, ctx);
    }
  } catch (...) {
    rethrow_as_input_error();
  }
}

std::vector<int32_t> TokenStoreReader::document(int64_t d) {
  LH_CHECK(d >= 0 && d < num_documents(), "token store '", path_, "': document ", d, " outside [0, ", num_documents(),
           ")");
  std::vector<int32_t> out(static_cast<size_t>(doc_length(d)));
  read(static_cast<int64_t>(offsets_[d]), doc_length(d), out.data());
  return out;
}

std::string TokenStoreReader::describe() const {
  return "token store '" + path_ + "' (" + std::to_string(num_documents()) + " documents, " +
         std::to_string(num_tokens()) + " tokens, tokenizer " + tokenizer_ + ")";
}

}  // namespace longhaul::data
