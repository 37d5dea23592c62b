// The long-context attention families as slice lists (definitions in mask.h). Those that the
// predicate shorthands express are built from them, so they keep every fast path.
#include <algorithm>

#include "attention/mask.h"
#include "core/errors.h"

namespace longhaul::masks {
namespace {

void check_positive(const char* fn, const char* what, int64_t v) {
  LH_CHECK(v > 0, "masks::", fn, ": ", what, " must be > 0, got ", v);
}

// Validates the offsets; returns T.
int64_t documents_end(const char* fn, const std::vector<int64_t>& cu) {
  check_document_offsets(std::string("masks::") + fn, cu);
  LH_CHECK(cu.back() > 0, "masks::", fn, ": the documents hold no token (offsets end at 0)");
  return cu.back();
}

std::string with_docs(const char* name, const std::vector<int64_t>& cu, const std::string& extra = "") {
  return detail::str_cat(name, "(docs=", cu.size() - 1, extra, ")");
}

}  // namespace

Mask full(int64_t t) { return Mask::full().bounded(t); }

Mask causal(int64_t t) { return Mask::causal().bounded(t); }

Mask full_document(std::vector<int64_t> cu) {
  documents_end("full_document", cu);
  return Mask::full().documents(std::move(cu));
}

Mask causal_document(std::vector<int64_t> cu) {
  documents_end("causal_document", cu);
  return Mask::causal().documents(std::move(cu));
}

Mask share_question(std::vector<int64_t> cu) {
  const int64_t t = documents_end("share_question", cu);
  const size_t n = cu.size() - 1;
  std::vector<MaskSlice> s;
  if (n == 1) {
    s.push_back(MaskSlice::causal(0, t, 0, t));
  } else {
    s.push_back(MaskSlice::causal(0, cu[2], 0, cu[2]));
    for (size_t d = 2; d < n; ++d) {
      s.push_back(MaskSlice::full(cu[d], cu[d + 1], 0, cu[1]));
      s.push_back(MaskSlice::causal(cu[d], cu[d + 1], cu[d], cu[d + 1]));
    }
  }
  std::string name = with_docs("share_question", cu);
  return Mask::from_slices(t, std::move(s), std::move(name), std::move(cu));
}

Mask causal_blockwise(std::vector<int64_t> cu) {
  const int64_t t = documents_end("causal_blockwise", cu);
  const size_t n = cu.size() - 1;
  std::vector<MaskSlice> s;
  for (size_t d = 0; d < n; ++d) s.push_back(MaskSlice::causal(cu[d], cu[d + 1], cu[d], cu[d + 1]));
  s.push_back(MaskSlice::full(cu[n - 1], t, 0, cu[n - 1]));
  std::string name = with_docs("causal_blockwise", cu);
  return Mask::from_slices(t, std::move(s), std::move(name), std::move(cu));
}

Mask prefix_lm_causal(int64_t t, int64_t prefix) {
  check_positive("prefix_lm_causal", "the length", t);
  LH_CHECK(prefix >= 0 && prefix <= t, "masks::prefix_lm_causal: prefix must be in [0, T = ", t, "], got ", prefix);
  return Mask::from_slices(t, {MaskSlice::full(0, prefix, 0, prefix), MaskSlice::causal(prefix, t, 0, t)},
                           detail::str_cat("prefix_lm_causal(prefix=", prefix, ")"));
}

Mask prefix_lm_document(std::vector<int64_t> cu, int64_t prefix) {
  const int64_t t = documents_end("prefix_lm_document", cu);
  LH_CHECK(prefix >= 0, "masks::prefix_lm_document: prefix must be >= 0, got ", prefix);
  std::vector<MaskSlice> s;
  for (size_t d = 0; d + 1 < cu.size(); ++d) {
    const int64_t p = cu[d] + std::min(prefix, cu[d + 1] - cu[d]);
    s.push_back(MaskSlice::full(cu[d], p, cu[d], p));
    s.push_back(MaskSlice::causal(p, cu[d + 1], cu[d], cu[d + 1]));
  }
  std::string name = with_docs("prefix_lm_document", cu, detail::str_cat(",prefix=", prefix));
  return Mask::from_slices(t, std::move(s), std::move(name), std::move(cu));
}

Mask sliding_window(int64_t t, int64_t w) {
  check_positive("sliding_window", "the window w", w);
  return Mask::full().window(w, w).bounded(t);
}

Mask sliding_window_causal(int64_t t, int64_t w) {
  check_positive("sliding_window_causal", "the window w", w);
  return Mask::causal().window(w, 0).bounded(t);
}

Mask global_sliding_window(int64_t t, int64_t g, int64_t w) {
  check_positive("global_sliding_window", "the length", t);
  check_positive("global_sliding_window", "the window w", w);
  LH_CHECK(g >= 0 && g <= t, "masks::global_sliding_window: the global tokens g must be in [0, T = ", t, "], got ", g);
  return Mask::from_slices(t,
                           {MaskSlice::full(0, g, 0, t), MaskSlice::full(g, t, 0, g),
                            MaskSlice::band(g, t, g, t, -w, w)},
                           detail::str_cat("global_sliding_window(global=", g, ",w=", w, ")"));
}

Mask block_causal_document(std::vector<int64_t> cu, int64_t b) {
  check_positive("block_causal_document", "the block size", b);
  const int64_t t = documents_end("block_causal_document", cu);
  std::vector<MaskSlice> s;
  for (size_t d = 0; d + 1 < cu.size(); ++d)
    for (int64_t q0 = cu[d]; q0 < cu[d + 1]; q0 += b) {
      const int64_t q1 = std::min(q0 + b, cu[d + 1]);
      s.push_back(MaskSlice::full(q0, q1, cu[d], q1));
    }
  std::string name = with_docs("block_causal_document", cu, detail::str_cat(",block=", b));
  return Mask::from_slices(t, std::move(s), std::move(name), std::move(cu));
}

const std::vector<std::string>& family_names() {
  static const std::vector<std::string> names{
      "full",           "causal",           "full_document",         "causal_document",
      "share_question", "causal_blockwise", "prefix_lm_causal",      "prefix_lm_document",
      "sliding_window", "sliding_window_causal", "global_sliding_window", "block_causal_document"};
  return names;
}

bool uses_documents(const std::string& name) {
  return name == "full_document" || name == "causal_document" || name == "share_question" ||
         name == "causal_blockwise" || name == "prefix_lm_document" || name == "block_causal_document";
}

Mask make(const std::string& name, int64_t t, std::vector<int64_t> cu, int64_t param, int64_t param2) {
  check_positive("make", "the length T", t);
  if (cu.empty()) cu = {0, t};
  LH_CHECK(cu.back() == t, "masks::make(", name, "): the document offsets end at ", cu.back(), ", expected T = ", t);
  if (name == "full") return full(t);
  if (name == "causal") return causal(t);
  if (name == "full_document") return full_document(std::move(cu));
  if (name == "causal_document") return causal_document(std::move(cu));
  if (name == "share_question") return share_question(std::move(cu));
  if (name == "causal_blockwise") return causal_blockwise(std::move(cu));
  if (name == "prefix_lm_causal") return prefix_lm_causal(t, param);
  if (name == "prefix_lm_document") return prefix_lm_document(std::move(cu), param);
  if (name == "sliding_window") return sliding_window(t, param);
  if (name == "sliding_window_causal") return sliding_window_causal(t, param);
  if (name == "global_sliding_window") return global_sliding_window(t, param2, param);
  if (name == "block_causal_document") return block_causal_document(std::move(cu), param);
  std::string known;
  for (const auto& n : family_names()) known += (known.empty() ? "" : ", ") + n;
  throw InvalidArgument(detail::str_cat("masks::make: unknown mask family '", name, "'; known: ", known));
}

}  // namespace longhaul::masks
