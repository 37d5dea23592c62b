#include "attention/mask.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "core/errors.h"

namespace longhaul {

const char* to_string(BlockClass c) {
  switch (c) {
    case BlockClass::Empty: return "empty";
    case BlockClass::Full: return "full";
    case BlockClass::Partial: return "partial";
  }
  return "?";
}

Mask Mask::causal() {
  Mask m;
  m.spec_.causal = true;
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
  LH_CHECK(cu.size() >= 2, "Mask::documents: cu_seqlens needs at least 2 entries [0, ..., T], got ", cu.size());
  LH_CHECK(cu.front() == 0, "Mask::documents: cu_seqlens must start at 0, got ", cu.front());
  for (size_t d = 1; d < cu.size(); ++d)
    LH_CHECK(cu[d] >= cu[d - 1], "Mask::documents: cu_seqlens must not decrease, but entry ", d, " is ", cu[d],
             " after ", cu[d - 1]);
  Mask m = *this;
  m.cu_seqlens_ = std::move(cu);
  m.spec_.documents = true;
  return m;
}

Mask Mask::window(int64_t left, int64_t right) const {
  LH_CHECK(left >= 0 && right >= 0, "Mask::window: left (", left, ") and right (", right, ") must be >= 0");
  Mask m = *this;
  m.spec_.window = true;
  m.spec_.left = left;
  m.spec_.right = right;
  return m;
}

int64_t Mask::document_of(int64_t pos) const {
  if (cu_seqlens_.empty()) return 0;
  LH_CHECK(pos >= 0 && pos < cu_seqlens_.back(), "Mask: position ", pos, " lies outside the documents [0, ",
           cu_seqlens_.back(), ")");
  // The last document whose start is <= pos (empty documents are skipped over).
  auto it = std::upper_bound(cu_seqlens_.begin(), cu_seqlens_.end(), pos);
  return static_cast<int64_t>(it - cu_seqlens_.begin()) - 1;
}

at::Tensor Mask::documents_of(const at::Tensor& positions) const {
  at::Tensor p = positions.to(at::kLong).contiguous();
  at::Tensor out = at::zeros_like(p);
  if (cu_seqlens_.empty()) return out;
  const int64_t* in = p.data_ptr<int64_t>();
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < p.numel(); ++i) o[i] = document_of(in[i]);
  return out;
}

int64_t Mask::area(int64_t q_begin, int64_t q_end, int64_t k_begin, int64_t k_end) const {
  // For query i the visible keys form one interval: [max(k_begin, doc start, i - left),
  // min(k_end, doc end, causal ? i + 1 : inf, i + right + 1)).
  constexpr int64_t inf = std::numeric_limits<int64_t>::max() / 4;
  int64_t total = 0;
  for (int64_t i = q_begin; i < q_end; ++i) {
    int64_t lo = k_begin, hi = k_end;
    if (!cu_seqlens_.empty()) {
      const int64_t d = document_of(i);
      lo = std::max(lo, cu_seqlens_[d]);
      hi = std::min(hi, cu_seqlens_[d + 1]);
    }
    if (spec_.causal) hi = std::min(hi, i + 1);
    if (spec_.window) {
      lo = std::max(lo, i - spec_.left);
      hi = std::min(hi, std::min(inf, i + spec_.right + 1));
    }
    total += std::max<int64_t>(0, hi - lo);
  }
  return total;
}

std::string Mask::describe() const {
  std::string s = spec_.causal ? "causal" : "full";
  if (!cu_seqlens_.empty()) s += "+documents(" + std::to_string(cu_seqlens_.size() - 1) + ")";
  if (spec_.window) s += "+window(" + std::to_string(spec_.left) + "," + std::to_string(spec_.right) + ")";
  return s;
}

}  // namespace longhaul
