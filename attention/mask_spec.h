// A mask as a list of slices, with the queries every kernel and strategy needs: visibility of one
// pair, exact classification of a rectangle of positions (empty / full / partial), the masked
// area, and the visible keys of a query (or the queries of a key) as a short list of intervals.
// Plain C++ (no ATen), shared by Mask and the kernels. Everything is in GLOBAL positions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace longhaul {

enum class BlockClass { Empty, Full, Partial };

// The positions [pos_min, pos_max] (inclusive) a set of rows lies in.
struct RowRange {
  int64_t pos_min, pos_max;
};

// Stands for "unbounded" (a position or a diagonal offset); far from overflow in the arithmetic.
inline constexpr int64_t kUnbounded = int64_t(1) << 60;

// Queries [q_begin, q_end) × keys [k_begin, k_end); query i sees key j iff lo <= j − i <= hi.
// The four slice types of the long-context benchmarks are bands with these offsets:
//   full: (−∞, +∞); causal (bottom-right aligned): hi = k_end − q_end;
//   inverse causal (top-left aligned): lo = k_begin − q_begin; bi-causal: both.
// A sliding window (left, right) is the band (−left, right).
struct MaskSlice {
  int64_t q_begin = 0, q_end = 0, k_begin = 0, k_end = 0;
  int64_t lo = -kUnbounded, hi = kUnbounded;

  static MaskSlice full(int64_t q0, int64_t q1, int64_t k0, int64_t k1) { return {q0, q1, k0, k1}; }
  static MaskSlice causal(int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
    return {q0, q1, k0, k1, -kUnbounded, k1 - q1};
  }
  static MaskSlice inverse_causal(int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
    return {q0, q1, k0, k1, k0 - q0, kUnbounded};
  }
  static MaskSlice bi_causal(int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
    return {q0, q1, k0, k1, k0 - q0, k1 - q1};
  }
  static MaskSlice band(int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t lo, int64_t hi) {
    return {q0, q1, k0, k1, lo, hi};
  }

  bool contains(int64_t i, int64_t j) const {
    return i >= q_begin && i < q_end && j >= k_begin && j < k_end && j - i >= lo && j - i <= hi;
  }
  // No visible pair at all.
  bool empty() const;
  // Visible pairs with i in [qa, qb] and j in [ka, kb] (inclusive; finite). O(1).
  int64_t area(int64_t qa, int64_t qb, int64_t ka, int64_t kb) const;
  // The slice cut to the pairs `other` also holds (empty ranges when they share none).
  MaskSlice intersect(const MaskSlice& other) const;
  bool operator==(const MaskSlice&) const = default;
};

// Keys [lo, hi] (inclusive) a query sees, or queries that see a key.
struct PosInterval {
  int64_t lo, hi;
};

// The visible keys of a list of query rows: row r's intervals are iv[ptr[r], ptr[r + 1]).
struct RowKeys {
  std::vector<int64_t> ptr;
  std::vector<PosInterval> iv;
};

class MaskSpec {
 public:
  MaskSpec() = default;  // no slice: nothing is visible
  // Slices whose visible pairs are disjoint (Mask validates that); empty slices are dropped.
  explicit MaskSpec(std::vector<MaskSlice> slices);

  const std::vector<MaskSlice>& slices() const { return by_q_; }
  bool visible(int64_t i, int64_t j) const;
  // Exact for the rectangle of positions [q.pos_min, q.pos_max] × [k.pos_min, k.pos_max], so
  // also right ("empty", "full") for any rows lying inside it.
  BlockClass classify(const RowRange& q, const RowRange& k) const;
  // Visible pairs with i in [qa, qb], j in [ka, kb] (inclusive).
  int64_t area(int64_t qa, int64_t qb, int64_t ka, int64_t kb) const;
  // The keys query i sees (out is cleared; sorted, disjoint, adjacent ones merged).
  void keys_of(int64_t i, std::vector<PosInterval>& out) const;
  // The keys that some query in [qa, qb] may see: each slice's band over those rows (a superset
  // for a range; exact for one row).
  void keys_of_rows_in(int64_t qa, int64_t qb, std::vector<PosInterval>& out) const;
  // Indices into slices() of the slices whose query range meets [qa, qb] (out is cleared).
  void slices_meeting_rows(int64_t qa, int64_t qb, std::vector<size_t>& out) const;
  // keys_of for every row of `pos` (n rows). O(n · (log slices + slices per row)).
  RowKeys keys_of_rows(const int64_t* pos, int64_t n) const;
  // The queries that see key j (same conventions).
  void queries_of(int64_t j, std::vector<PosInterval>& out) const;
  // The widest band hi − lo when every slice is a band with both offsets bounded (a windowed
  // mask); −1 otherwise. Tiling uses it.
  int64_t band_width() const;
  // A 64-bit fingerprint of the slices (cross-rank agreement checks).
  uint64_t fingerprint() const;

 private:
  // Calls f(slice) for every slice whose q (or k) range meets [a, b]: a binary search over the
  // running maximum of the range ends, then a scan while the range starts stay <= b.
  template <typename F>
  void for_q_range(int64_t a, int64_t b, F&& f) const;
  template <typename F>
  void for_k_range(int64_t a, int64_t b, F&& f) const;

  std::vector<MaskSlice> by_q_, by_k_;       // sorted by q_begin / by k_begin
  std::vector<int64_t> q_end_max_, k_end_max_;  // running maxima of q_end / k_end in those orders
};

}  // namespace longhaul
