#include "data/hdf5/store_writer.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "data/files.h"
#include "data/format.h"
#include "data/hdf5/check.h"

namespace longhaul::data {

namespace {

// Runs the HDF5 appends (and so the shuffle + deflate) on one background thread while the caller
// reads and tokenizes the next block. At most two jobs wait: memory stays bounded.
class WriteQueue {
 public:
  WriteQueue() : thread_([this] { run(); }) {}
  ~WriteQueue() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // Queues a job; rethrows the error of an earlier job that failed.
  void submit(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return jobs_.size() < 2 || error_; });
    rethrow();
    jobs_.push_back(std::move(job));
    cv_.notify_all();
  }
  // Waits until every job ran; rethrows the first error.
  void drain() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return (jobs_.empty() && !busy_) || error_; });
    rethrow();
  }

 private:
  void rethrow() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }
  void run() {
    h5::quiet();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stop_ and nothing left
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      busy_ = true;
      lock.unlock();
      std::exception_ptr err;
      try {
        job();
      } catch (...) {
        err = std::current_exception();
      }
      lock.lock();
      busy_ = false;
      if (err && !error_) error_ = err;
      if (err) jobs_.clear();  // later appends would land at the wrong offsets
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::exception_ptr error_;
  bool stop_ = false, busy_ = false;
  std::thread thread_;
};

}  // namespace

struct TokenStoreWriter::Files {
  h5::Handle file, tokens, offsets;
  WriteQueue queue;  // last: destroyed (joined) before the handles close
};

namespace {
// A 1-D extendible chunked dataset: shuffle + deflate (unless level 0), then Fletcher-32.
h5::Handle create_dataset(hid_t file, const char* name, hid_t type, int64_t chunk, int deflate, const std::string& ctx) {
  const hsize_t zero = 0, unlimited = H5S_UNLIMITED, c = static_cast<hsize_t>(chunk);
  h5::Handle space(LH_CHECK_HDF5(H5Screate_simple(1, &zero, &unlimited), ctx), H5Sclose);
  h5::Handle dcpl(LH_CHECK_HDF5(H5Pcreate(H5P_DATASET_CREATE), ctx), H5Pclose);
  LH_CHECK_HDF5(H5Pset_chunk(dcpl, 1, &c), ctx);
  if (deflate > 0) {
    LH_CHECK_HDF5(H5Pset_shuffle(dcpl), ctx);
    LH_CHECK_HDF5(H5Pset_deflate(dcpl, static_cast<unsigned>(deflate)), ctx);
  }
  // A Fletcher-32 checksum of each stored chunk: a corrupted chunk is an error, not wrong tokens.
  LH_CHECK_HDF5(H5Pset_fletcher32(dcpl), ctx);
  return h5::Handle(LH_CHECK_HDF5(H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), ctx, ": /", name),
                    H5Dclose);
}

// Appends n elements of memory type mem_type to a 1-D dataset that holds `have` elements.
void append_1d(hid_t dset, hid_t mem_type, const void* data, int64_t have, int64_t n, const std::string& ctx) {
  if (n == 0) return;
  const hsize_t new_size = static_cast<hsize_t>(have + n), start = static_cast<hsize_t>(have),
                count = static_cast<hsize_t>(n);
  LH_CHECK_HDF5(H5Dset_extent(dset, &new_size), ctx);
  h5::Handle fspace(LH_CHECK_HDF5(H5Dget_space(dset), ctx), H5Sclose);
  LH_CHECK_HDF5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &count, nullptr), ctx);
  h5::Handle mspace(LH_CHECK_HDF5(H5Screate_simple(1, &count, nullptr), ctx), H5Sclose);
  LH_CHECK_HDF5(H5Dwrite(dset, mem_type, mspace, fspace, H5P_DEFAULT, data), ctx);
}

// Fixed-length, null-terminated UTF-8 (data/format.h says why not variable-length).
void write_string_attr(hid_t obj, const char* name, const std::string& value, const std::string& ctx) {
  h5::Handle type(LH_CHECK_HDF5(H5Tcopy(H5T_C_S1), ctx), H5Tclose);
  LH_CHECK_HDF5(H5Tset_size(type, value.size() + 1), ctx);
  LH_CHECK_HDF5(H5Tset_strpad(type, H5T_STR_NULLTERM), ctx);
  LH_CHECK_HDF5(H5Tset_cset(type, H5T_CSET_UTF8), ctx);
  h5::Handle space(LH_CHECK_HDF5(H5Screate(H5S_SCALAR), ctx), H5Sclose);
  h5::Handle attr(LH_CHECK_HDF5(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), ctx, ": attribute ", name),
                  H5Aclose);
  LH_CHECK_HDF5(H5Awrite(attr, type, value.c_str()), ctx);
}

void write_int_attr(hid_t obj, const char* name, int64_t value, const std::string& ctx) {
  h5::Handle space(LH_CHECK_HDF5(H5Screate(H5S_SCALAR), ctx), H5Sclose);
  h5::Handle attr(LH_CHECK_HDF5(H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), ctx,
                                ": attribute ", name),
                  H5Aclose);
  LH_CHECK_HDF5(H5Awrite(attr, H5T_NATIVE_INT64, &value), ctx);
}
}  // namespace

TokenStoreWriter::TokenStoreWriter(const std::string& path, StoreMeta meta, StoreWriterOptions opt)
    : h_(std::make_unique<Files>()), path_(path), meta_(std::move(meta)), opt_(opt) {
  LH_CHECK(meta_.vocab_size >= 1 && meta_.vocab_size <= (int64_t(1) << 31), "token store '", path,
           "': vocab_size ", meta_.vocab_size, " outside [1, 2^31]");
  LH_CHECK(meta_.eos_id >= 0 && meta_.eos_id < meta_.vocab_size, "token store '", path, "': eos_id ", meta_.eos_id,
           " outside [0, vocab_size = ", meta_.vocab_size, ")");
  LH_CHECK(opt.chunk_tokens >= 1 && opt.deflate_level >= 0 && opt.deflate_level <= 9 && opt.buffer_tokens >= 1,
           "token store '", path, "': chunk_tokens must be >= 1 and deflate_level in 0…9 (got ", opt.chunk_tokens,
           ", ", opt.deflate_level, ")");
  h5::quiet();
  const std::string ctx = "token store '" + path + "'";
  token_bytes_ = meta_.vocab_size <= kMaxUint16Vocab ? 2 : 4;
  files::check_writable_file(path, ctx + ": the file");  // the file system's reason, in one line
  // The 1.10 file format: its object headers and chunk indexes carry checksums, so a damaged
  // header or index is an error when read, not a silently different dataset (the chunks carry
  // Fletcher-32 themselves). Readable by HDF5 1.10 and later (h5py included).
  h5::Handle fapl(LH_CHECK_HDF5(H5Pcreate(H5P_FILE_ACCESS), ctx), H5Pclose);
  LH_CHECK_HDF5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST), ctx);
  h_->file = h5::Handle(LH_CHECK_HDF5(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), ctx,
                                      ": cannot create the file"),
                        H5Fclose);
  h_->tokens = create_dataset(h_->file, kTokensDataset, token_bytes_ == 2 ? H5T_STD_U16LE : H5T_STD_U32LE,
                              opt.chunk_tokens, opt.deflate_level, ctx);
  h_->offsets = create_dataset(h_->file, kOffsetsDataset, H5T_STD_U64LE, std::min<int64_t>(opt.chunk_tokens, 1 << 16),
                               opt.deflate_level, ctx);
  tok_buf_.reserve(static_cast<size_t>(opt.buffer_tokens));
  off_buf_.push_back(0);
}

TokenStoreWriter::~TokenStoreWriter() = default;

void TokenStoreWriter::append(const int32_t* tokens, int64_t n) {
  LH_CHECK(!closed_, "token store '", path_, "': append after close()");
  const uint32_t vocab = static_cast<uint32_t>(meta_.vocab_size);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t t = static_cast<uint32_t>(tokens[i]);  // negative ids wrap to huge: caught below
    if (t >= vocab)
      throw InvalidArgument("token store '" + path_ + "': token " + std::to_string(tokens[i]) + " of document " +
                            std::to_string(docs_) + " outside [0, vocab_size = " + std::to_string(vocab) + ")");
    tok_buf_.push_back(t);
    if (static_cast<int64_t>(tok_buf_.size()) >= opt_.buffer_tokens) flush_tokens();
  }
  tokens_ += n;
}

void TokenStoreWriter::end_document() {
  LH_CHECK(!closed_, "token store '", path_, "': end_document after close()");
  off_buf_.push_back(static_cast<uint64_t>(tokens_));
  ++docs_;
  doc_begin_ = tokens_;
  if (static_cast<int64_t>(off_buf_.size()) >= (1 << 16)) flush_offsets();
}

void TokenStoreWriter::flush_tokens() {
  const int64_t n = static_cast<int64_t>(tok_buf_.size()), at = tokens_written_;
  if (n == 0) return;
  const hid_t dset = h_->tokens;
  const std::string ctx = "token store '" + path_ + "': writing /tokens";
  if (token_bytes_ == 2) {
    auto narrow = std::make_shared<std::vector<uint16_t>>(tok_buf_.begin(), tok_buf_.end());
    h_->queue.submit([=] { append_1d(dset, H5T_NATIVE_UINT16, narrow->data(), at, n, ctx); });
    tok_buf_.clear();
  } else {
    auto wide = std::make_shared<std::vector<uint32_t>>(std::move(tok_buf_));
    h_->queue.submit([=] { append_1d(dset, H5T_NATIVE_UINT32, wide->data(), at, n, ctx); });
    tok_buf_ = {};
    tok_buf_.reserve(static_cast<size_t>(opt_.buffer_tokens));
  }
  tokens_written_ += n;
}

void TokenStoreWriter::flush_offsets() {
  const int64_t n = static_cast<int64_t>(off_buf_.size()), at = offsets_written_;
  if (n == 0) return;
  const hid_t dset = h_->offsets;
  auto offs = std::make_shared<std::vector<uint64_t>>(std::move(off_buf_));
  const std::string ctx = "token store '" + path_ + "': writing /doc_offsets";
  h_->queue.submit([=] { append_1d(dset, H5T_NATIVE_UINT64, offs->data(), at, n, ctx); });
  offsets_written_ += n;
  off_buf_ = {};
}

void TokenStoreWriter::close() {
  if (closed_) return;
  if (tokens_ > doc_begin_) end_document();
  flush_tokens();
  flush_offsets();
  h_->queue.drain();
  const std::string ctx = "token store '" + path_ + "': writing attributes";
  write_string_attr(h_->file, "format", kFormatName, ctx);
  write_int_attr(h_->file, "version", kFormatVersion, ctx);
  write_string_attr(h_->file, "tokenizer", meta_.tokenizer, ctx);
  write_int_attr(h_->file, "vocab_size", meta_.vocab_size, ctx);
  write_int_attr(h_->file, "eos_id", meta_.eos_id, ctx);
  closed_ = true;
  try {
    // Closing a dataset writes its cached chunks out: where the file system refuses them (a full
    // disk), this is where it says so; unchecked, the store was left with holes, readable as one.
    LH_CHECK_HDF5(h_->tokens.reset(), "token store '", path_, "': writing /tokens out");
    LH_CHECK_HDF5(h_->offsets.reset(), "token store '", path_, "': writing /doc_offsets out");
    LH_CHECK_HDF5(h_->file.reset(), "token store '", path_, "': closing the file");
  } catch (const Error& e) {
    // What landed is not a store: removed, so that nothing reads it as one later.
    h_.reset();
    const bool removed = files::remove(path_) == 0;
    throw Error(std::string(e.what()) + (removed ? "; the unfinished file was removed" : ""));
  }
}

}  // namespace longhaul::data
