#include "benchmarks/kernel/mask_cases.h"

#include <algorithm>
#include <random>

#include "core/errors.h"
#include "data/length_mix.h"

namespace longhaul::bench {
namespace {
bool is_family(const std::string& name) {
  const auto& f = masks::family_names();
  return name != "full" && name != "causal" && std::find(f.begin(), f.end(), name) != f.end();
}

bool has_documents(const std::string& name) {
  return name == "documents" || name == "causal_documents" || (is_family(name) && masks::uses_documents(name));
}

Mask base(const std::string& name) {
  check_mask_name(name);
  return name == "full" || name == "documents" ? Mask::full() : Mask::causal();
}

int64_t scale(int64_t x, int64_t t, int64_t small_t) {
  return std::max<int64_t>(1, (x * small_t + t / 2) / t);
}

// A family on documents `cu` of [0, t), its parameters scaled by t / full_t (1 when full size).
Mask family(const std::string& name, int64_t t, std::vector<int64_t> cu, const MaskCaseOptions& o, int64_t full_t) {
  auto sc = [&](int64_t x) { return t == full_t ? x : scale(x, full_t, t); };
  int64_t param = sc(o.window_left), param2 = 0;
  if (name == "prefix_lm_causal") param = std::min(t, o.prefix > 0 ? sc(o.prefix) : t / 4);
  if (name == "prefix_lm_document") param = sc(o.doc_prefix);
  if (name == "block_causal_document") param = sc(o.block);
  if (name == "global_sliding_window") param2 = std::min(t, sc(o.global_tokens));
  return masks::make(name, t, masks::uses_documents(name) ? std::move(cu) : std::vector<int64_t>{}, param, param2);
}
}  // namespace

const std::vector<std::string>& mask_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n{"full", "causal", "documents", "causal_documents", "causal_window"};
    for (const auto& f : masks::family_names())
      if (f != "full" && f != "causal") n.push_back(f);
    return n;
  }();
  return names;
}

void check_mask_name(const std::string& name) {
  const auto& n = mask_names();
  if (std::find(n.begin(), n.end(), name) != n.end()) return;
  std::string known;
  for (const auto& x : n) known += (known.empty() ? "" : ", ") + x;
  throw InvalidArgument("bench: unknown mask '" + name + "', expected one of " + known);
}

bool sdpa_expresses(const std::string& name) { return name == "full" || name == "causal"; }

std::vector<int64_t> document_offsets(int64_t t, int64_t doc_min, int64_t doc_max, uint64_t seed) {
  LH_CHECK(t > 0, "bench kernel: sequence length must be positive, got ", t);
  LH_CHECK(doc_min >= 1 && doc_max >= doc_min, "bench kernel: need 1 <= doc-min <= doc-max, got ", doc_min, " and ",
           doc_max);
  std::mt19937_64 rng(seed);
  const uint64_t span = static_cast<uint64_t>(doc_max - doc_min + 1);
  std::vector<int64_t> cu{0};
  while (cu.back() < t) cu.push_back(std::min(t, cu.back() + doc_min + static_cast<int64_t>(rng() % span)));
  return cu;
}

namespace {
std::vector<int64_t> case_documents(int64_t t, const MaskCaseOptions& o) {
  if (!o.doc_mix.empty()) return data::document_offsets_of_mix(o.doc_mix, t, o.seed);
  return document_offsets(t, o.doc_min, o.doc_max, o.seed);
}
}  // namespace

Mask make_mask(const std::string& name, int64_t t, const MaskCaseOptions& o) {
  if (is_family(name)) return family(name, t, case_documents(t, o), o, t);
  Mask m = base(name);
  if (has_documents(name)) m = m.documents(case_documents(t, o));
  if (name == "causal_window") {
    LH_CHECK(o.window_left >= 0 && o.window_right >= 0, "bench kernel: window sizes must be >= 0, got left ",
             o.window_left, ", right ", o.window_right);
    m = m.window(o.window_left, o.window_right);
  }
  return m;
}

Mask make_scaled_mask(const std::string& name, int64_t t, int64_t small_t, const MaskCaseOptions& o) {
  LH_CHECK(small_t > 0 && small_t <= t, "bench kernel: check length ", small_t, " must be in [1, ", t, "]");
  if (small_t == t) return make_mask(name, t, o);
  std::vector<int64_t> cu{0};
  if (has_documents(name)) {
    const auto offsets = case_documents(t, o);
    for (size_t d = 1; d < offsets.size(); ++d) {
      const int64_t off = offsets[d];
      const int64_t s = off == t ? small_t : std::min(small_t, scale(off, t, small_t));
      if (s > cu.back()) cu.push_back(s);
    }
    if (cu.back() != small_t) cu.push_back(small_t);
  }
  if (is_family(name)) return family(name, small_t, cu, o, t);
  Mask m = base(name);
  if (has_documents(name)) m = m.documents(cu);
  if (name == "causal_window") {
    const int64_t left = o.window_left == 0 ? 0 : scale(o.window_left, t, small_t);
    const int64_t right = o.window_right == 0 ? 0 : scale(o.window_right, t, small_t);
    m = m.window(left, right);
  }
  return m;
}

}  // namespace longhaul::bench
