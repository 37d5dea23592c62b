// longhaul::Mask: which keys a query sees, as a predicate on GLOBAL positions (i query, j key):
//   same_document(i, j) && (!causal || j <= i) && (!window || (i - j <= left && j - i <= right))
// Windows are inclusive. Blocks of queries × keys are classified empty / full / partial from the
// predicate so kernels and strategies skip empty blocks and run full ones without mask work.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

namespace longhaul {

enum class BlockClass { Empty, Full, Partial };
const char* to_string(BlockClass c);

// Summary of a set of rows: the range of their global positions and of their document ids.
struct RowRange {
  int64_t pos_min, pos_max;
  int64_t doc_min, doc_max;
};

class Mask {
 public:
  static Mask full() { return Mask(); }
  static Mask causal();
  // Documents: cu_seqlens = global offsets [0, l0, l0+l1, ..., T] (int64 or int32, CPU).
  Mask documents(const at::Tensor& cu_seqlens) const;
  Mask documents(std::vector<int64_t> cu_seqlens) const;
  // Inclusive window: a query at i sees keys j with i - j <= left and j - i <= right.
  Mask window(int64_t left, int64_t right) const;

  bool is_causal() const { return causal_flag_; }
  bool has_documents() const { return !cu_seqlens_.empty(); }
  bool has_window() const { return window_; }
  int64_t left() const { return left_; }
  int64_t right() const { return right_; }
  const std::vector<int64_t>& cu_seqlens() const { return cu_seqlens_; }
  bool is_full() const { return !causal_flag_ && !window_ && cu_seqlens_.empty(); }

  // Document id of a global position (0 without documents); throws outside [0, T).
  int64_t document_of(int64_t pos) const;
  // Document ids of positions (int64 tensor in, int64 tensor out).
  at::Tensor documents_of(const at::Tensor& positions) const;
  // The element predicate on positions and their document ids.
  bool visible(int64_t i, int64_t j, int64_t doc_i, int64_t doc_j) const {
    if (doc_i != doc_j) return false;
    if (causal_flag_ && j > i) return false;
    if (window_ && (i - j > left_ || j - i > right_)) return false;
    return true;
  }
  // Exact for "empty" and "full" whatever the positions inside the ranges (documents are
  // contiguous position ranges, so equal document ids at both ends mean one document).
  BlockClass classify(const RowRange& q, const RowRange& k) const;
  // Number of visible (i, j) pairs for query positions [q_begin, q_end) and key positions
  // [k_begin, k_end): the masked area the FLOP counts use. O(query rows + documents).
  int64_t area(int64_t q_begin, int64_t q_end, int64_t k_begin, int64_t k_end) const;

  // "causal+documents(3)+window(128,0)": for logs, errors and cross-rank agreement checks.
  std::string describe() const;

 private:
  bool causal_flag_ = false;
  bool window_ = false;
  int64_t left_ = 0, right_ = 0;
  std::vector<int64_t> cu_seqlens_;
};

}  // namespace longhaul
