// The mask predicate and block classification as a plain struct (no ATen), shared by Mask and
// the kernels. Document ids are per row (see Mask::documents_of); without documents they are 0.
#pragma once

#include <cstdint>

namespace longhaul {

enum class BlockClass { Empty, Full, Partial };

// Summary of a set of rows: the range of their global positions and of their document ids.
struct RowRange {
  int64_t pos_min, pos_max;
  int64_t doc_min, doc_max;
};

struct MaskSpec {
  bool causal = false;
  bool documents = false;
  bool window = false;
  int64_t left = 0, right = 0;  // inclusive window

  bool visible(int64_t i, int64_t j, int64_t doc_i, int64_t doc_j) const {
    return doc_i == doc_j && !(causal && j > i) && !(window && (i - j > left || j - i > right));
  }

  // Exact for "empty" and "full" whatever the positions inside the ranges (documents are
  // contiguous position ranges, so equal document ids at both ends mean one document).
  BlockClass classify(const RowRange& q, const RowRange& k) const {
    bool full = true;
    if (documents) {
      if (q.doc_max < k.doc_min || k.doc_max < q.doc_min) return BlockClass::Empty;
      full = q.doc_min == q.doc_max && k.doc_min == k.doc_max && q.doc_min == k.doc_min;
    }
    if (causal) {
      if (k.pos_min > q.pos_max) return BlockClass::Empty;  // every key after every query
      full = full && k.pos_max <= q.pos_min;
    }
    if (window) {
      if (q.pos_min - k.pos_max > left || k.pos_min - q.pos_max > right) return BlockClass::Empty;
      full = full && q.pos_max - k.pos_min <= left && k.pos_max - q.pos_min <= right;
    }
    return full ? BlockClass::Full : BlockClass::Partial;
  }
};

}  // namespace longhaul
