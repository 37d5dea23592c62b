// A mask family on a batch of independent sequences packed back to back (definition in mask.h):
// no query sees another sequence, whatever the family.
#include <algorithm>
#include <functional>

#include "attention/mask.h"
#include "core/errors.h"

namespace longhaul::masks {
namespace {

// Each unit [units[u], units[u+1]) gets part(length) (a mask on [0, length)), moved to the unit's
// place: the union is block-diagonal.
Mask block_diagonal(const std::vector<int64_t>& units, const std::function<Mask(size_t, int64_t)>& part,
                    std::string name, std::vector<int64_t> cu) {
  std::vector<MaskSlice> slices;
  for (size_t u = 0; u + 1 < units.size(); ++u) {
    const int64_t b = units[u], len = units[u + 1] - b;
    if (len == 0) continue;
    const Mask m = part(u, len);
    for (const MaskSlice& s : m.spec().slices()) {
      MaskSlice c = s.intersect(MaskSlice::full(0, len, 0, len));
      c.q_begin += b, c.q_end += b, c.k_begin += b, c.k_end += b;  // the band's diagonals are relative
      slices.push_back(c);
    }
  }
  return Mask::from_slices(units.back(), std::move(slices), std::move(name), std::move(cu));
}

// The offsets of `cu` inside [b, e), from 0.
std::vector<int64_t> inside(const std::vector<int64_t>& cu, int64_t b, int64_t e) {
  std::vector<int64_t> r;
  for (int64_t c : cu)
    if (c >= b && c <= e) r.push_back(c - b);
  return r;
}

}  // namespace

Mask make_packed(const std::string& name, const std::vector<int64_t>& sequences, std::vector<int64_t> cu,
                 int64_t param, int64_t param2) {
  check_document_offsets("masks::make_packed(" + name + "): the sequences", sequences);
  if (cu.empty()) cu = sequences;
  check_document_offsets("masks::make_packed(" + name + "): the documents", cu);
  const int64_t t = sequences.back();
  LH_CHECK(t > 0, "masks::make_packed(", name, "): the sequences hold no token (offsets end at 0)");
  LH_CHECK(cu.back() == t, "masks::make_packed(", name, "): the documents end at ", cu.back(),
           ", expected the sequences' end T = ", t);
  for (int64_t s : sequences)
    LH_CHECK(std::binary_search(cu.begin(), cu.end(), s), "masks::make_packed(", name, "): sequence boundary ", s,
             " is not a document boundary; every sequence must be whole documents");
  if (sequences.size() == 2 && cu.size() == 2) {  // one sequence of one document: the family itself
    if (name == "prefix_lm_causal" && param > t) param = t;
    if (name == "global_sliding_window" && param2 > t) param2 = t;
    return make(name, t, std::move(cu), param, param2);
  }
  const size_t docs = cu.size() - 1;
  auto per = [&](const char* unit, size_t n) { return detail::str_cat(" per ", unit, " (", unit, "s=", n, ")"); };

  // The families without documents hold within each document (a sequence where the sampler does
  // not mask documents): the shorthands keep every fast path of the kernels.
  if (name == "full") return full_document(std::move(cu));
  if (name == "causal") return causal_document(std::move(cu));
  if (name == "sliding_window" || name == "sliding_window_causal") {
    make(name, t, {}, param);  // checks the window
    return (name == "sliding_window" ? Mask::full() : Mask::causal()).documents(std::move(cu)).window(
        param, name == "sliding_window" ? param : 0);
  }
  // The prefix and the global tokens restart in every document, clamped to its length.
  if (name == "prefix_lm_causal") {
    LH_CHECK(param >= 0, "masks::make_packed(prefix_lm_causal): the prefix must be >= 0, got ", param);
    return prefix_lm_document(std::move(cu), param);
  }
  if (name == "global_sliding_window") {
    LH_CHECK(param2 >= 0, "masks::make_packed(global_sliding_window): the global tokens must be >= 0, got ", param2);
    std::string label = detail::str_cat("global_sliding_window(global=", param2, ",w=", param, ")", per("document", docs));
    const std::vector<int64_t> units = cu;
    return block_diagonal(
        units, [&](size_t, int64_t len) { return global_sliding_window(len, std::min(param2, len), param); },
        std::move(label), std::move(cu));
  }
  // Families whose documents see each other hold within each sequence, on its documents.
  if (name == "share_question" || name == "causal_blockwise") {
    std::string label = name + per("sequence", sequences.size() - 1) + detail::str_cat(" docs=", docs);
    return block_diagonal(
        sequences,
        [&](size_t s, int64_t len) { return make(name, len, inside(cu, sequences[s], sequences[s + 1]), param, param2); },
        std::move(label), std::move(cu));
  }
  // The other document families never cross a document, so never a sequence.
  return make(name, t, std::move(cu), param, param2);
}

}  // namespace longhaul::masks
