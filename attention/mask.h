// longhaul::Mask: which keys each query sees, in GLOBAL positions (i query, j key), as a list of
// slices (mask_spec.h): query range × key range × a band of diagonals lo <= j − i <= hi.
//
// Two ways to build one:
// - the predicate shorthands, composable: same_document(i, j) && (!causal || j <= i) &&
//   (!window || (i − j <= left && j − i <= right)) — Mask::causal().documents(cu).window(128, 0);
// - the long-context families (masks:: below) or any slice list (Mask::from_slices).
// Every kernel and strategy takes every mask; blocks of queries × keys are classified empty /
// full / partial exactly from the slices, so empty work is skipped and full blocks run without
// mask work. Rows that see no key get out = 0, lse = −∞.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "attention/mask_spec.h"

namespace longhaul {

const char* to_string(BlockClass c);
// InvalidArgument, prefixed by fn, unless cu = [0, ..., T] has at least 2 entries and never decreases.
void check_document_offsets(const std::string& fn, const std::vector<int64_t>& cu);

class Mask;
namespace masks {
Mask full(int64_t t);
Mask causal(int64_t t);
Mask sliding_window(int64_t t, int64_t w);
Mask sliding_window_causal(int64_t t, int64_t w);
}  // namespace masks

class Mask {
 public:
  Mask() { rebuild(); }  // full
  static Mask full() { return Mask(); }
  static Mask causal();
  // Documents: cu_seqlens = global offsets [0, l0, l0+l1, ..., T] (int64 or int32, CPU). On a
  // mask that has documents already, a pair must share a document in both (the offsets' union).
  Mask documents(const at::Tensor& cu_seqlens) const;
  Mask documents(std::vector<int64_t> cu_seqlens) const;
  // Inclusive window: a query at i sees keys j with i − j <= left and j − i <= right.
  Mask window(int64_t left, int64_t right) const;

  // A mask on [0, length) from slices whose visible pairs are disjoint: a slice outside
  // [0, length) or two slices sharing a pair (which would count it twice) is InvalidArgument.
  // `name` is what describe() says; `cu_seqlens`, the documents the slices were built on (if
  // any), is what cu_seqlens() reports (a ShardPlan with documents must have the same).
  static Mask from_slices(int64_t length, std::vector<MaskSlice> slices, std::string name = "slices",
                          std::vector<int64_t> cu_seqlens = {});

  // The predicate the shorthands built (all false for a general mask, see is_general()).
  bool is_causal() const { return causal_; }
  bool has_documents() const { return !cu_seqlens_.empty(); }
  bool has_window() const { return window_; }
  int64_t left() const { return left_; }
  int64_t right() const { return right_; }
  // The documents the mask was built on (shorthand or family); empty without documents.
  const std::vector<int64_t>& cu_seqlens() const { return cu_seqlens_; }
  bool is_full() const { return !general_ && !causal_ && !window_ && cu_seqlens_.empty(); }
  // Not expressible as documents ∧ causal ∧ window (a family such as share_question, or slices).
  bool is_general() const { return general_; }
  // The sequence length the mask is defined on; −1 for the shorthands without documents, which
  // hold for any length.
  int64_t length() const { return length_; }
  const MaskSpec& spec() const { return spec_; }

  bool visible(int64_t i, int64_t j) const { return spec_.visible(i, j); }
  BlockClass classify(const RowRange& q, const RowRange& k) const { return spec_.classify(q, k); }
  // Visible (i, j) pairs for query positions [q_begin, q_end) and key positions [k_begin,
  // k_end): the masked area the FLOP counts use. O(slices).
  int64_t area(int64_t q_begin, int64_t q_end, int64_t k_begin, int64_t k_end) const;
  // Visible-key intervals of query positions (int64 [n] in): [n, M, 2] int64 (lo, hi inclusive),
  // M the most intervals of any row, unused entries (1, 0). Exact paths build masks from it.
  at::Tensor key_intervals(const at::Tensor& positions) const;
  // [Tq, Tk] bool, true where query q_pos[a] sees key k_pos[b]: the dense mask a baseline such as
  // torch SDPA takes (Tq · Tk bytes: for tests and baselines only).
  at::Tensor dense(const at::Tensor& q_pos, const at::Tensor& k_pos) const;

  // "causal+documents(3)+window(128,0)", "share_question(docs=4)": for logs and errors.
  std::string describe() const;
  // Slices and length in 64 bits: what ranks compare to agree on the mask.
  uint64_t fingerprint() const;

 private:
  friend Mask masks::full(int64_t);
  friend Mask masks::causal(int64_t);
  friend Mask masks::sliding_window(int64_t, int64_t);
  friend Mask masks::sliding_window_causal(int64_t, int64_t);
  void rebuild();  // the slices of a shorthand from its predicate
  Mask bounded(int64_t length) const;  // a shorthand on [0, length) only

  MaskSpec spec_;
  bool causal_ = false, window_ = false, general_ = false;
  int64_t left_ = 0, right_ = 0, length_ = -1;
  std::vector<int64_t> cu_seqlens_;
  std::string name_;  // a general mask's description
};

// The long-context attention families (the Long-Context Attention Benchmark's set), on documents
// with offsets cu = [0, c_1, ..., T] (or a length T). Query i, key j, document d = [c_d, c_{d+1}).
namespace masks {
// Every pair of [0, T).
Mask full(int64_t t);
// j <= i.
Mask causal(int64_t t);
// Same document.
Mask full_document(std::vector<int64_t> cu);
// Same document and j <= i.
Mask causal_document(std::vector<int64_t> cu);
// Documents 0 and 1 are one causal block [0, c_2) (the question and the first answer); every
// later document is causal on itself and sees the whole question [0, c_1). One document: causal.
Mask share_question(std::vector<int64_t> cu);
// Every document causal on itself; the last document also sees every earlier token.
Mask causal_blockwise(std::vector<int64_t> cu);
// The first `prefix` tokens see each other fully; every later token sees all before it (and
// itself). prefix in [0, T].
Mask prefix_lm_causal(int64_t t, int64_t prefix);
// Per document, its first min(prefix, length) tokens see each other fully, the rest causal
// within the document. prefix >= 0.
Mask prefix_lm_document(std::vector<int64_t> cu, int64_t prefix);
// |i − j| <= w, w > 0.
Mask sliding_window(int64_t t, int64_t w);
// 0 <= i − j <= w, w > 0.
Mask sliding_window_causal(int64_t t, int64_t w);
// Global tokens [0, g) see and are seen by every token; all others see |i − j| <= w. This is the
// "flex" definition (global rows and columns); the other published one lets only some rows see
// the global keys, so the global tokens are not global both ways. g >= 0, w > 0.
Mask global_sliding_window(int64_t t, int64_t g, int64_t w);
// Each document cut into blocks of b tokens (the last may be shorter); query block n of a
// document sees blocks 0..n of it fully. b > 0.
Mask block_causal_document(std::vector<int64_t> cu, int64_t b);

// The family names above, in that order.
const std::vector<std::string>& family_names();
// Builds family `name` on [0, t): documents `cu` (empty: one document [0, t); else must end at
// t), `param` the family's parameter (window w, prefix, block size; global_sliding_window uses
// `param` for w and `param2` for the global tokens). Unknown names list the known ones.
Mask make(const std::string& name, int64_t t, std::vector<int64_t> cu = {}, int64_t param = 0, int64_t param2 = 0);
// Family `name` on a batch of independent sequences packed back to back, as training steps are:
// `sequences` = their offsets [0, s_1, ..., T]; `cu` = the documents (empty: the sequences), a
// refinement of them (every sequence boundary is a document boundary). No query ever sees another
// sequence. The families without documents hold within each document (causal: causal_document;
// the window, the prefix and the global tokens restart in each, the prefix and the global tokens
// cut to its length); share_question and causal_blockwise hold within each sequence, on its
// documents; the document families are make()'s on cu. One sequence of one document: make().
Mask make_packed(const std::string& name, const std::vector<int64_t>& sequences, std::vector<int64_t> cu = {},
                 int64_t param = 0, int64_t param2 = 0);
// Whether family `name` is defined on documents (full_document, ...; the others ignore cu).
bool uses_documents(const std::string& name);
}  // namespace masks

}  // namespace longhaul
