#include "attention/mask_spec.h"

#include <algorithm>
#include <functional>

#include "core/fnv1a.h"

namespace longhaul {
namespace {

// Σ_{y <= x} clamp(y, 0, w): how many keys of a w-wide range lie at or left of a diagonal, summed
// over rows whose diagonal reaches y = x, x − 1, ….
int64_t clamp_prefix(int64_t x, int64_t w) {
  if (x <= 0) return 0;
  if (x <= w) return x * (x + 1) / 2;
  return w * (w + 1) / 2 + (x - w) * w;
}

// #{(i, j): i in [qa, qb], j in [ka, kb], j − i <= t}.
int64_t pairs_below(int64_t qa, int64_t qb, int64_t ka, int64_t kb, int64_t t) {
  const int64_t w = kb - ka + 1;
  t = std::clamp(t, ka - qb - 1, kb - qa);  // beyond these every pair is out / in
  // Row i holds clamp(i + t − ka + 1, 0, w) such keys.
  return clamp_prefix(qb + t - ka + 1, w) - clamp_prefix(qa - 1 + t - ka + 1, w);
}

void sort_and_merge(std::vector<PosInterval>& out) {
  std::sort(out.begin(), out.end(), [](const PosInterval& x, const PosInterval& y) { return x.lo < y.lo; });
  size_t n = 0;
  for (const PosInterval& iv : out) {
    if (n > 0 && iv.lo <= out[n - 1].hi + 1)
      out[n - 1].hi = std::max(out[n - 1].hi, iv.hi);
    else
      out[n++] = iv;
  }
  out.resize(n);
}

}  // namespace

int64_t MaskSlice::area(int64_t qa, int64_t qb, int64_t ka, int64_t kb) const {
  qa = std::max(qa, q_begin), qb = std::min(qb, q_end - 1);
  ka = std::max(ka, k_begin), kb = std::min(kb, k_end - 1);
  if (qa > qb || ka > kb || lo > hi) return 0;
  return pairs_below(qa, qb, ka, kb, hi) - pairs_below(qa, qb, ka, kb, lo - 1);
}

bool MaskSlice::empty() const {
  // Row i sees [max(k_begin, i + lo), min(k_end − 1, i + hi)]: some row does iff this holds.
  if (q_begin >= q_end || k_begin >= k_end || lo > hi) return true;
  return std::max(q_begin, k_begin - hi) > std::min(q_end - 1, k_end - 1 - lo);
}

MaskSlice MaskSlice::intersect(const MaskSlice& o) const {
  return {std::max(q_begin, o.q_begin), std::min(q_end, o.q_end), std::max(k_begin, o.k_begin),
          std::min(k_end, o.k_end),     std::max(lo, o.lo),         std::min(hi, o.hi)};
}

MaskSpec::MaskSpec(std::vector<MaskSlice> slices) {
  for (const MaskSlice& s : slices)
    if (!s.empty()) by_q_.push_back(s);
  by_k_ = by_q_;
  std::stable_sort(by_q_.begin(), by_q_.end(), [](const MaskSlice& a, const MaskSlice& b) {
    return a.q_begin != b.q_begin ? a.q_begin < b.q_begin : a.k_begin < b.k_begin;
  });
  std::stable_sort(by_k_.begin(), by_k_.end(), [](const MaskSlice& a, const MaskSlice& b) {
    return a.k_begin != b.k_begin ? a.k_begin < b.k_begin : a.q_begin < b.q_begin;
  });
  int64_t mq = -kUnbounded, mk = -kUnbounded;
  for (size_t s = 0; s < by_q_.size(); ++s) {
    q_end_max_.push_back(mq = std::max(mq, by_q_[s].q_end));
    k_end_max_.push_back(mk = std::max(mk, by_k_[s].k_end));
  }
}

template <typename F>
void MaskSpec::for_q_range(int64_t a, int64_t b, F&& f) const {
  // First slice whose running maximum of q_end passes a: no earlier slice reaches a.
  size_t s = std::upper_bound(q_end_max_.begin(), q_end_max_.end(), a) - q_end_max_.begin();
  for (; s < by_q_.size() && by_q_[s].q_begin <= b; ++s)
    if (by_q_[s].q_end > a) f(by_q_[s]);
}

template <typename F>
void MaskSpec::for_k_range(int64_t a, int64_t b, F&& f) const {
  size_t s = std::upper_bound(k_end_max_.begin(), k_end_max_.end(), a) - k_end_max_.begin();
  for (; s < by_k_.size() && by_k_[s].k_begin <= b; ++s)
    if (by_k_[s].k_end > a) f(by_k_[s]);
}

bool MaskSpec::visible(int64_t i, int64_t j) const {
  bool seen = false;
  for_q_range(i, i, [&](const MaskSlice& s) { seen = seen || s.contains(i, j); });
  return seen;
}

int64_t MaskSpec::area(int64_t qa, int64_t qb, int64_t ka, int64_t kb) const {
  int64_t total = 0;
  if (qa > qb || ka > kb) return 0;
  for_q_range(qa, qb, [&](const MaskSlice& s) { total += s.area(qa, qb, ka, kb); });
  return total;
}

BlockClass MaskSpec::classify(const RowRange& q, const RowRange& k) const {
  const int64_t a = area(q.pos_min, q.pos_max, k.pos_min, k.pos_max);
  if (a == 0) return BlockClass::Empty;
  const int64_t all = (q.pos_max - q.pos_min + 1) * (k.pos_max - k.pos_min + 1);
  return a == all ? BlockClass::Full : BlockClass::Partial;
}

void MaskSpec::keys_of(int64_t i, std::vector<PosInterval>& out) const { keys_of_rows_in(i, i, out); }

void MaskSpec::keys_of_rows_in(int64_t qa, int64_t qb, std::vector<PosInterval>& out) const {
  out.clear();
  for_q_range(qa, qb, [&](const MaskSlice& s) {
    const int64_t lo = std::max(s.k_begin, std::max(qa, s.q_begin) + s.lo);
    const int64_t hi = std::min(s.k_end - 1, std::min(qb, s.q_end - 1) + s.hi);
    if (lo <= hi) out.push_back({lo, hi});
  });
  if (out.size() > 1) sort_and_merge(out);
}

void MaskSpec::slices_meeting_rows(int64_t qa, int64_t qb, std::vector<size_t>& out) const {
  out.clear();
  for_q_range(qa, qb, [&](const MaskSlice& s) { out.push_back(static_cast<size_t>(&s - by_q_.data())); });
}

RowKeys MaskSpec::keys_of_rows(const int64_t* pos, int64_t n) const {
  RowKeys rk;
  rk.ptr.reserve(n + 1);
  rk.ptr.push_back(0);
  std::vector<PosInterval> row;
  for (int64_t r = 0; r < n; ++r) {
    keys_of(pos[r], row);
    rk.iv.insert(rk.iv.end(), row.begin(), row.end());
    rk.ptr.push_back(static_cast<int64_t>(rk.iv.size()));
  }
  return rk;
}

void MaskSpec::queries_of(int64_t j, std::vector<PosInterval>& out) const {
  out.clear();
  for_k_range(j, j, [&](const MaskSlice& s) {
    const int64_t lo = std::max(s.q_begin, j - s.hi), hi = std::min(s.q_end - 1, j - s.lo);
    if (lo <= hi) out.push_back({lo, hi});
  });
  if (out.size() > 1) sort_and_merge(out);
}

int64_t MaskSpec::band_width() const {
  int64_t w = 0;
  for (const MaskSlice& s : by_q_) {
    if (s.lo <= -kUnbounded || s.hi >= kUnbounded) return -1;
    w = std::max(w, s.hi - s.lo);
  }
  return by_q_.empty() ? -1 : w;
}

uint64_t MaskSpec::fingerprint() const {
  Fnv1a h;  // over the slice fields
  for (const MaskSlice& s : by_q_)
    for (int64_t v : {s.q_begin, s.q_end, s.k_begin, s.k_end, s.lo, s.hi}) h.word(static_cast<uint64_t>(v));
  return h.value();
}

}  // namespace longhaul
