// longhaul::Mask: which keys a query sees, as a predicate on GLOBAL positions (i query, j key):
//   same_document(i, j) && (!causal || j <= i) && (!window || (i - j <= left && j - i <= right))
// Windows are inclusive. Blocks of queries × keys are classified empty / full / partial from the
// predicate so kernels and strategies skip empty blocks and run full ones without mask work.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "attention/mask_spec.h"

namespace longhaul {

const char* to_string(BlockClass c);

class Mask {
 public:
  static Mask full() { return Mask(); }
  static Mask causal();
  // Documents: cu_seqlens = global offsets [0, l0, l0+l1, ..., T] (int64 or int32, CPU).
  Mask documents(const at::Tensor& cu_seqlens) const;
  Mask documents(std::vector<int64_t> cu_seqlens) const;
  // Inclusive window: a query at i sees keys j with i - j <= left and j - i <= right.
  Mask window(int64_t left, int64_t right) const;

  bool is_causal() const { return spec_.causal; }
  bool has_documents() const { return spec_.documents; }
  bool has_window() const { return spec_.window; }
  int64_t left() const { return spec_.left; }
  int64_t right() const { return spec_.right; }
  const std::vector<int64_t>& cu_seqlens() const { return cu_seqlens_; }
  bool is_full() const { return !spec_.causal && !spec_.window && !spec_.documents; }
  const MaskSpec& spec() const { return spec_; }

  // Document id of a global position (0 without documents); throws outside [0, T).
  int64_t document_of(int64_t pos) const;
  // Document ids of positions (int64 tensor in, int64 tensor out).
  at::Tensor documents_of(const at::Tensor& positions) const;
  // The element predicate on positions and their document ids.
  bool visible(int64_t i, int64_t j, int64_t doc_i, int64_t doc_j) const { return spec_.visible(i, j, doc_i, doc_j); }
  BlockClass classify(const RowRange& q, const RowRange& k) const { return spec_.classify(q, k); }
  // Number of visible (i, j) pairs for query positions [q_begin, q_end) and key positions
  // [k_begin, k_end): the masked area the FLOP counts use. O(query rows + documents).
  int64_t area(int64_t q_begin, int64_t q_end, int64_t k_begin, int64_t k_end) const;

  // "causal+documents(3)+window(128,0)": for logs, errors and cross-rank agreement checks.
  std::string describe() const;

 private:
  MaskSpec spec_;
  std::vector<int64_t> cu_seqlens_;
};

}  // namespace longhaul
