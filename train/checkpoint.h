// The checkpoint file: named strings and named tensors in one self-checking binary file.
//   "LHCKPT01"  u64 total bytes  records...  u64 FNV-1a hash of everything before it
//   record: u8 kind (1 string, 2 tensor), u32 name length, name, then
//           string: u64 length, bytes | tensor: u8 dtype, u32 ndim, i64 dims[ndim], u64 bytes, data
// Why our own format rather than torch::save or HDF5: torch::save's zip archive reports a damaged
// file with an opaque c10::Error (or not at all where a flipped byte lands in tensor data), and
// HDF5 would tie training to builds with HDF5. Here the length field tells a truncated file from
// a corrupt one, the hash catches any flipped byte, and the format is a page of code.
// Writing is atomic: a temporary file next to the target, fsync, rename — an existing checkpoint
// is replaced only by a complete new one.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace longhaul::train {

struct CheckpointFile {
  std::map<std::string, std::string> strings;
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // float32, float64, int64 or uint8 (CPU)

  const std::string& string(const std::string& key) const;  // InvalidArgument when missing
  const at::Tensor& tensor(const std::string& name) const;  // InvalidArgument when missing
};

void write_checkpoint(const std::string& path, const CheckpointFile& c);
// Throws InvalidArgument naming the file and the problem: missing, not a checkpoint, truncated
// (bytes present vs expected), corrupt (hash mismatch), malformed record.
CheckpointFile read_checkpoint(const std::string& path);

}  // namespace longhaul::train
