#include "attention/mask.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <iterator>

#include "core/errors.h"

namespace longhaul {
namespace {

std::string slice_str(const MaskSlice& s) {
  auto bound = [](int64_t v) { return v >= kUnbounded ? std::string("inf") : std::to_string(v); };
  std::string out = detail::str_cat("q [", s.q_begin, ", ", bound(s.q_end), ") x k [", s.k_begin, ", ",
                                    bound(s.k_end), ")");
  if (s.lo > -kUnbounded || s.hi < kUnbounded)
    out += detail::str_cat(" with ", s.lo > -kUnbounded ? std::to_string(s.lo) + " <= " : "", "j - i",
                           s.hi < kUnbounded ? " <= " + std::to_string(s.hi) : "");
  return out;
}

// Every slice cut to each of `filter` (the pairs both hold).
std::vector<MaskSlice> restrict_to(const std::vector<MaskSlice>& slices, const std::vector<MaskSlice>& filter) {
  std::vector<MaskSlice> out;
  for (const MaskSlice& s : slices)
    for (const MaskSlice& f : filter) {
      const MaskSlice x = s.intersect(f);
      if (!x.empty()) out.push_back(x);
    }
  return out;
}

std::vector<MaskSlice> document_squares(const std::vector<int64_t>& cu) {
  std::vector<MaskSlice> out;
  for (size_t d = 0; d + 1 < cu.size(); ++d)
    if (cu[d + 1] > cu[d]) out.push_back(MaskSlice::full(cu[d], cu[d + 1], cu[d], cu[d + 1]));
  return out;
}

}  // namespace

void check_document_offsets(const std::string& fn, const std::vector<int64_t>& cu) {
  LH_CHECK(cu.size() >= 2, fn, ": document offsets need at least 2 entries [0, ..., T], got ", cu.size());
  LH_CHECK(cu.front() == 0, fn, ": document offsets must start at 0, got ", cu.front());
  for (size_t d = 1; d < cu.size(); ++d)
    LH_CHECK(cu[d] >= cu[d - 1], fn, ": document offsets must not decrease, but entry ", d, " is ", cu[d], " after ",
             cu[d - 1]);
}

const char* to_string(BlockClass c) {
  switch (c) {
    case BlockClass::Empty: return "empty";
    case BlockClass::Full: return "full";
    case BlockClass::Partial: return "partial";
  }
  return "?";
}

void Mask::rebuild() {
  const int64_t len = !cu_seqlens_.empty() ? cu_seqlens_.back() : length_ >= 0 ? length_ : kUnbounded;
  const int64_t lo = window_ ? -left_ : -kUnbounded;
  const int64_t hi = std::min(causal_ ? int64_t(0) : kUnbounded, window_ ? right_ : kUnbounded);
  std::vector<MaskSlice> slices{MaskSlice::band(0, len, 0, len, lo, hi)};
  if (!cu_seqlens_.empty()) slices = restrict_to(slices, document_squares(cu_seqlens_));
  spec_ = MaskSpec(std::move(slices));
}

Mask Mask::bounded(int64_t length) const {
  LH_CHECK(length > 0, "Mask: the sequence length must be > 0, got ", length);
  Mask m = *this;
  m.length_ = length;
  m.rebuild();
  return m;
}

Mask Mask::causal() {
  Mask m;
  m.causal_ = true;
  m.rebuild();
  return m;
}

Mask Mask::documents(const at::Tensor& cu_seqlens) const {
  LH_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.device().is_cpu() &&
               (cu_seqlens.scalar_type() == at::kLong || cu_seqlens.scalar_type() == at::kInt),
           "Mask::documents: cu_seqlens must be a 1-D int32/int64 CPU tensor, got ", cu_seqlens.sizes(), " ",
           cu_seqlens.scalar_type(), " on ", cu_seqlens.device());
  at::Tensor c = cu_seqlens.to(at::kLong).contiguous();
  return documents(std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()));
}

Mask Mask::documents(std::vector<int64_t> cu) const {
  check_document_offsets("Mask::documents", cu);
  LH_CHECK(length_ < 0 || cu.back() == length_, "Mask::documents: the document offsets end at ", cu.back(),
           " but the mask is defined on [0, ", length_, ")");
  Mask m = *this;
  m.length_ = cu.back();
  if (!cu_seqlens_.empty()) {  // documents of documents: both partitions' boundaries
    std::vector<int64_t> both;
    std::set_union(cu_seqlens_.begin(), cu_seqlens_.end(), cu.begin(), cu.end(), std::back_inserter(both));
    both.erase(std::unique(both.begin(), both.end()), both.end());
    cu = std::move(both);
  }
  if (general_) {
    m.spec_ = MaskSpec(restrict_to(spec_.slices(), document_squares(cu)));
    m.name_ += detail::str_cat("+documents(", cu.size() - 1, ")");
    m.cu_seqlens_ = std::move(cu);
    return m;
  }
  m.cu_seqlens_ = std::move(cu);
  m.rebuild();
  return m;
}

Mask Mask::window(int64_t left, int64_t right) const {
  LH_CHECK(left >= 0 && right >= 0, "Mask::window: left (", left, ") and right (", right, ") must be >= 0");
  // A window wider than any sequence bounds nothing; capped so that i ± window cannot overflow.
  left = std::min(left, kUnbounded), right = std::min(right, kUnbounded);
  Mask m = *this;
  if (general_) {
    m.spec_ = MaskSpec(restrict_to(spec_.slices(), {MaskSlice::band(0, kUnbounded, 0, kUnbounded, -left, right)}));
    m.name_ += detail::str_cat("+window(", left, ",", right, ")");
    return m;
  }
  // Two windows keep what both allow.
  m.left_ = window_ ? std::min(left_, left) : left;
  m.right_ = window_ ? std::min(right_, right) : right;
  m.window_ = true;
  m.rebuild();
  return m;
}

Mask Mask::from_slices(int64_t length, std::vector<MaskSlice> slices, std::string name,
                       std::vector<int64_t> cu_seqlens) {
  LH_CHECK(length > 0, "Mask::from_slices: the sequence length must be > 0, got ", length);
  if (!cu_seqlens.empty()) {
    check_document_offsets("Mask::from_slices", cu_seqlens);
    LH_CHECK(cu_seqlens.back() == length, "Mask::from_slices: the document offsets end at ", cu_seqlens.back(),
             ", expected the length ", length);
  }
  for (size_t s = 0; s < slices.size(); ++s) {
    MaskSlice& x = slices[s];
    LH_CHECK(x.q_begin >= 0 && x.q_begin <= x.q_end && x.q_end <= length && x.k_begin >= 0 &&
                 x.k_begin <= x.k_end && x.k_end <= length,
             "Mask::from_slices: slice ", s, " (", slice_str(x), ") is not a range inside [0, ", length, ")");
    // A band with lo > hi holds no pair (a bi-causal slice with fewer keys than queries): dropped.
    // Band offsets past any sequence bound nothing; capped so that i + offset cannot overflow.
    x.lo = std::max(x.lo, -kUnbounded), x.hi = std::min(x.hi, kUnbounded);
  }
  // Disjoint visible pairs: compare each slice with those whose query range starts inside its own.
  std::vector<size_t> order(slices.size());
  for (size_t s = 0; s < order.size(); ++s) order[s] = s;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return slices[a].q_begin < slices[b].q_begin; });
  for (size_t a = 0; a < order.size(); ++a)
    for (size_t b = a + 1; b < order.size() && slices[order[b]].q_begin < slices[order[a]].q_end; ++b) {
      const MaskSlice& x = slices[order[a]];
      const MaskSlice& y = slices[order[b]];
      const MaskSlice both = x.intersect(y);
      if (both.empty()) continue;
      const int64_t i = std::max(both.q_begin, both.k_begin - both.hi), j = std::max(both.k_begin, i + both.lo);
      throw InvalidArgument(detail::str_cat("Mask::from_slices: slices ", std::min(order[a], order[b]), " (",
                                            slice_str(order[a] < order[b] ? x : y), ") and ",
                                            std::max(order[a], order[b]), " (",
                                            slice_str(order[a] < order[b] ? y : x), ") both hold query ", i,
                                            ", key ", j, ": every visible pair must belong to one slice"));
    }
  Mask m;
  m.general_ = true;
  m.length_ = length;
  m.name_ = std::move(name);
  m.cu_seqlens_ = std::move(cu_seqlens);
  m.spec_ = MaskSpec(std::move(slices));
  return m;
}

int64_t Mask::area(int64_t q_begin, int64_t q_end, int64_t k_begin, int64_t k_end) const {
  // Sides up to 2^31 keep every partial sum (at most side^2) inside int64.
  constexpr int64_t kMaxSide = int64_t(1) << 31;
  LH_CHECK(q_end - q_begin <= kMaxSide && k_end - k_begin <= kMaxSide, "Mask::area: the block [", q_begin, ", ",
           q_end, ") x [", k_begin, ", ", k_end, ") is wider than 2^31 positions on a side; its area could pass int64");
  return spec_.area(q_begin, q_end - 1, k_begin, k_end - 1);
}

at::Tensor Mask::key_intervals(const at::Tensor& positions) const {
  at::Tensor p = positions.to(at::kLong).contiguous();
  const RowKeys rk = spec_.keys_of_rows(p.data_ptr<int64_t>(), p.numel());
  int64_t m = 1;
  for (int64_t r = 0; r < p.numel(); ++r) m = std::max(m, rk.ptr[r + 1] - rk.ptr[r]);
  at::Tensor out = at::empty({p.numel(), m, 2}, at::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t r = 0; r < p.numel(); ++r)
    for (int64_t u = 0; u < m; ++u) {
      const int64_t e = rk.ptr[r] + u;
      const bool used = e < rk.ptr[r + 1];
      o[(r * m + u) * 2] = used ? rk.iv[e].lo : 1;
      o[(r * m + u) * 2 + 1] = used ? rk.iv[e].hi : 0;
    }
  return out;
}

at::Tensor Mask::dense(const at::Tensor& q_pos, const at::Tensor& k_pos) const {
  const at::Tensor iv = key_intervals(q_pos);  // [Tq, M, 2]
  const at::Tensor k = k_pos.to(at::kLong).view({1, -1, 1});
  return ((k >= iv.select(2, 0).unsqueeze(1)) & (k <= iv.select(2, 1).unsqueeze(1))).any(2);
}

std::string Mask::describe() const {
  if (general_) return name_;
  std::string s = causal_ ? "causal" : "full";
  if (!cu_seqlens_.empty()) s += "+documents(" + std::to_string(cu_seqlens_.size() - 1) + ")";
  if (window_) s += "+window(" + std::to_string(left_) + "," + std::to_string(right_) + ")";
  return s;
}

uint64_t Mask::fingerprint() const {
  return spec_.fingerprint() ^ (static_cast<uint64_t>(length_) * 0x9e3779b97f4a7c15ull);
}

}  // namespace longhaul
