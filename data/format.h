// The token store's on-disk contract (docs/data.md), shared by the writer, the reader, prep
// and the tests. A file is readable by h5py:
//   /tokens        uint16 (vocab_size <= 65536) or uint32 [N], chunked, shuffle + deflate + Fletcher-32
//   /doc_offsets   uint64 [n_docs + 1]; document d is tokens[doc_offsets[d] : doc_offsets[d + 1]]
//   attributes on the root group: format, version, tokenizer, vocab_size, eos_id
// Version 2 stores its string attributes as fixed-length, null-terminated UTF-8. Version 1 used
// variable-length strings, whose bytes live in HDF5's global heap: libhdf5 1.10 can crash inside
// H5Aread on a corrupt global-heap reference, before any check of ours can run, so readers refuse
// variable-length strings instead of reading them.
#pragma once

#include <cstdint>

namespace longhaul::data {

inline constexpr const char* kFormatName = "longhaul-tokens";
inline constexpr int64_t kFormatVersion = 2;
inline constexpr const char* kTokensDataset = "tokens";
inline constexpr const char* kOffsetsDataset = "doc_offsets";
// Largest vocabulary that fits the uint16 token type.
inline constexpr int64_t kMaxUint16Vocab = 65536;
// Targets of positions whose next token lies in another document (torch's cross-entropy default).
inline constexpr int32_t kIgnoreTarget = -100;

}  // namespace longhaul::data
