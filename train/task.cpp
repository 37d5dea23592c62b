#include "train/task.h"

#include "data/rng.h"
#include "longhaul/config.h"
#include "core/errors.h"
#if LONGHAUL_WITH_HDF5
#include "data/hdf5/store_writer.h"
#endif

namespace longhaul::train {

using V = TaskVocab;

std::vector<int32_t> task_document(int log2_len, int pairs, uint64_t seed, int64_t* query_row) {
  const int64_t L = int64_t(1) << log2_len;
  LH_CHECK(pairs >= 1 && pairs <= V::kKeys, "task: pairs ", pairs, " must lie in [1, ", V::kKeys, "]");
  LH_CHECK(L >= 2 * pairs + 5, "task: documents of ", L, " tokens cannot hold ", pairs, " pairs (need ",
           2 * pairs + 5, ")");
  data::SplitMix64 rng{data::mix64(seed)};
  std::vector<int32_t> keys(V::kKeys);
  for (int i = 0; i < V::kKeys; ++i) keys[i] = V::key0 + i;
  data::shuffle(keys, rng);
  std::vector<int32_t> doc;
  doc.reserve(L);
  doc.push_back(V::bos);
  std::vector<int32_t> values(pairs);
  for (int i = 0; i < pairs; ++i) {
    values[i] = V::value0 + static_cast<int32_t>(rng.below(V::kValues));
    doc.push_back(keys[i]);
    doc.push_back(values[i]);
  }
  int32_t f = static_cast<int32_t>(rng.below(V::kFiller));
  while (static_cast<int64_t>(doc.size()) < L - 4) doc.push_back(V::filler0 + (f++ % V::kFiller));
  const int q = static_cast<int>(rng.below(pairs));
  doc.push_back(V::query);
  if (query_row) *query_row = static_cast<int64_t>(doc.size());
  doc.push_back(keys[q]);
  doc.push_back(values[q]);
  doc.push_back(V::eos);
  return doc;
}

namespace {

// Documents per length: equal token mass per length; their order shuffled.
template <typename Sink>
void for_each_task_document(const TaskOptions& o, Sink&& sink) {
  LH_CHECK(o.min_log2 >= 4 && o.min_log2 <= o.max_log2 && o.max_log2 <= 30, "task: lengths 2^", o.min_log2,
           "…2^", o.max_log2, " are out of range (4 <= min <= max <= 30)");
  const int n_len = o.max_log2 - o.min_log2 + 1;
  std::vector<int> lengths;
  for (int k = o.min_log2; k <= o.max_log2; ++k) {
    const int64_t docs = std::max<int64_t>(1, o.tokens / n_len >> k);
    for (int64_t i = 0; i < docs; ++i) lengths.push_back(k);
  }
  data::SplitMix64 rng{o.seed};
  data::shuffle(lengths, rng);
  for (size_t i = 0; i < lengths.size(); ++i)
    sink(task_document(lengths[i], o.pairs, data::mix64(o.seed * 0x9e3779b97f4a7c15ULL + i) & ~(1ULL << 63)));
}

}  // namespace

std::shared_ptr<data::MemoryTokenSource> task_source(const TaskOptions& o) {
  auto src = std::make_shared<data::MemoryTokenSource>(V::size, V::eos);
  for_each_task_document(o, [&](const std::vector<int32_t>& d) { src->add_document(d); });
  return src;
}

void write_task_store(const std::string& path, const TaskOptions& o) {
#if LONGHAUL_WITH_HDF5
  data::StoreMeta meta{"longhaul-recall-task", V::size, V::eos};
  data::TokenStoreWriter w(path, meta);
  for_each_task_document(o, [&](const std::vector<int32_t>& d) { w.add_document(d); });
  w.close();
#else
  (void)path;
  (void)o;
  throw InvalidArgument("task: writing the task's token store needs a build with HDF5 (LONGHAUL_WITH_HDF5)");
#endif
}

EvalSet task_eval_set(int log2_len, int docs, int pairs, uint64_t seed) {
  EvalSet e;
  e.length = int64_t(1) << log2_len;
  for (int i = 0; i < docs; ++i) {
    int64_t q = 0;
    // Seeds with the top bit set: never a training document's seed.
    auto d = task_document(log2_len, pairs, data::mix64(seed + 7919 * log2_len + i) | (1ULL << 63), &q);
    e.query_rows.push_back(static_cast<int64_t>(e.tokens.size()) + q);
    e.tokens.insert(e.tokens.end(), d.begin(), d.end());
  }
  return e;
}

}  // namespace longhaul::train
