// The embedded long-range task (`longhaul train` without data): associative recall. Every
// document has exactly 2^k tokens (EOS included, so DD keeps it whole in bucket k):
//   BOS k1 v1 … kn vn  filler…  QRY kq vq EOS
// n key–value pairs hidden at the start, then a low-entropy filler (a counting sequence over the
// filler alphabet: the loss falls quickly), then one key asked again; the model must predict its
// value, 2^k − n·2 − 4 tokens after it was given. Retrieval accuracy = argmax at kq's row == vq.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/token_source.h"

namespace longhaul::train {

struct TaskOptions {
  int min_log2 = 6, max_log2 = 9;  // document lengths 2^min … 2^max
  int pairs = 1;                   // key–value pairs per document (1: a passkey)
  int64_t tokens = int64_t(1) << 20;  // about this many tokens, spread evenly over the lengths
  uint64_t seed = 1234;
};

struct TaskVocab {
  static constexpr int kKeys = 16, kValues = 16, kFiller = 32;
  static constexpr int32_t key0 = 0, value0 = kKeys, filler0 = kKeys + kValues;
  static constexpr int32_t bos = filler0 + kFiller, query = bos + 1, eos = bos + 2;
  static constexpr int64_t size = eos + 1;
};

// One document of 2^log2_len tokens; `query_row` receives the row of kq (its target is vq).
std::vector<int32_t> task_document(int log2_len, int pairs, uint64_t seed, int64_t* query_row = nullptr);

// The training documents (shuffled lengths), in memory.
std::shared_ptr<data::MemoryTokenSource> task_source(const TaskOptions& o);
// The same documents written as a token store (needs HDF5; InvalidArgument without).
void write_task_store(const std::string& path, const TaskOptions& o);

// Held-out documents of one length for evaluation (seeds disjoint from training).
struct EvalSet {
  int64_t length = 0;
  std::vector<int32_t> tokens;      // docs · length, packed
  std::vector<int64_t> query_rows;  // global rows whose next token is the asked value
};
EvalSet task_eval_set(int log2_len, int docs, int pairs, uint64_t seed);

}  // namespace longhaul::train
