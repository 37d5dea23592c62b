#include "benchmarks/data/data_bench.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "data/attention_cost.h"
#include "data/batch.h"
#include "data/concat_chunk.h"
#include "data/files.h"
#include "data/prefetch_loader.h"
#include "data/sampler.h"
#include "longhaul/config.h"
#include "core/errors.h"
#if LONGHAUL_WITH_HDF5
#include "data/hdf5/prep.h"
#include "data/hdf5/store_reader.h"
#endif

namespace longhaul::bench {

DataBenchOptions quick_data_options() {
  DataBenchOptions o;
  o.max_files = 200;
  o.stall_steps = 10;
  o.loader_budget_s = 1;
  return o;
}

std::string default_corpus() {
  std::unique_ptr<FILE, int (*)(FILE*)> p(
      popen("python3 -c 'import sysconfig; print(sysconfig.get_paths()[\"stdlib\"])' 2>/dev/null", "r"), pclose);
  char buf[4096] = {0};
  std::string out;
  if (p && std::fgets(buf, sizeof buf, p.get())) out = buf;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (out.empty() || !data::files::is_directory(out))
    throw InvalidArgument("cannot find the Python standard library (python3 sysconfig); pass --corpus DIR");
  return out;
}

#if LONGHAUL_WITH_HDF5
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

Row measure(const std::string& name, Value v, const std::string& unit) {
  return Row().add("measure", name).add("value", std::move(v)).add("unit", unit);
}

// Tokens per second of building batches from a plan source until it ends or the budget is spent.
double loader_rate(data::TokenSource& src, data::PlanSource& plans, double budget_s) {
  int64_t tokens = 0;
  const auto t0 = Clock::now();
  while (since(t0) < budget_s) {
    auto p = plans.next();
    if (!p) break;
    tokens += data::build_batch(src, std::move(*p)).num_tokens();
  }
  return double(tokens) / since(t0);
}

struct TempDir {
  std::string path;
  bool owned = false;
  ~TempDir() {
    if (owned) data::files::remove_tree(path);
  }
};
}  // namespace

DataBenchResult run_data_bench(const DataBenchOptions& o) {
  DataBenchResult r;
  const std::string corpus = o.corpus.empty() ? default_corpus() : o.corpus;
  TempDir dir;
  if (o.workdir.empty()) {
    dir.path = data::files::make_temp_dir("longhaul_bench_data_");
    dir.owned = true;
  } else {
    data::files::create_directories(o.workdir);
    dir.path = o.workdir;
  }
  const std::string store = data::files::join(dir.path, "corpus.h5");

  // 1. prep.
  data::PrepOptions po;
  po.inputs = {corpus};
  po.output = store;
  po.input.glob = o.glob;
  po.input.exclude_dirs = o.exclude_dirs;
  po.input.max_files = o.max_files;
  const data::PrepSummary ps = data::prep(po);
  int64_t skipped = 0;
  for (const auto& [why, n] : ps.skipped) skipped += n;
  r.rows.push_back(measure("corpus_files", ps.files, "files"));
  r.rows.push_back(measure("corpus_mb", double(ps.input_bytes) / 1e6, "MB"));
  r.rows.push_back(measure("documents", ps.documents, "documents"));
  r.rows.push_back(measure("tokens", ps.tokens, "tokens"));
  r.rows.push_back(measure("skipped_inputs", skipped, "files"));
  r.rows.push_back(measure("prep_mb_per_s", ps.mb_per_s(), "MB/s of text"));
  r.rows.push_back(measure("store_bytes_per_token", double(data::files::file_size(store)) / double(ps.tokens),
                           "bytes/token (shuffle+deflate 1, Fletcher-32)"));
  std::string excluded;
  for (const auto& d : o.exclude_dirs) excluded += (excluded.empty() ? "" : ", ") + d;
  r.notes.push_back("corpus: " + corpus + " (" + o.glob + "; not walked: " + (excluded.empty() ? "-" : excluded) +
                    "); byte tokenizer");

  // 2. loader throughput: sequential (concat-and-chunk in file order) and random (DD batches),
  //    each from a freshly opened store. HDF5 shares a dataset's chunk cache between handles open
  //    at the same time, so no other reader stays open: every row starts with a cold cache.
  std::vector<uint64_t> off;
  {
    data::TokenStoreReader r(store);
    off = r.doc_offsets();
  }
  auto dd = std::make_shared<data::Decomposition>(off, o.range);
  const int64_t b = o.tokens_per_step;
  {
    data::TokenStoreReader fresh(store);
    data::ConcatChunkSampler seq(fresh.doc_offsets(), {o.range.max_len(), b, 1, 0, false, false, o.seed});
    r.rows.push_back(measure("loader_sequential_tokens_per_s", loader_rate(fresh, seq, o.loader_budget_s),
                             "tokens/s (concat in file order, cold cache)"));
  }
  {
    data::TokenStoreReader fresh(store);
    data::DDSampler rnd(dd, {b, 1, 0, data::Curriculum::GrowP2, 8, o.seed});
    r.rows.push_back(measure("loader_tokens_per_s", loader_rate(fresh, rnd, o.loader_budget_s), "tokens/s (DD batches, random, cold cache)"));
  }

  // 3. stall: a training loop that computes compute_ms_per_8k per 8192 tokens (sleeps, as a GPU
  //    step leaves the CPU free) while the loader prepares the next batches.
  {
    auto plans = std::make_shared<data::DDSampler>(dd, data::SamplerOptions{b, 1, 0, data::Curriculum::GrowP2, 8, o.seed + 1});
    auto src = std::make_shared<data::TokenStoreReader>(store);
    data::PrefetchLoader loader(src, plans, o.prefetch_depth);
    const double step_s = o.compute_ms_per_8k * 1e-3 * double(b) / 8192.0;
    double compute = 0, waited_first = 0;
    int64_t steps = 0;
    for (; steps < o.stall_steps; ++steps) {
      const double w0 = loader.waited_seconds();
      auto batch = loader.next();
      if (!batch) break;
      if (steps == 0) waited_first = loader.waited_seconds() - w0;  // pipeline fill: not a stall
      const auto t0 = Clock::now();
      std::this_thread::sleep_for(std::chrono::duration<double>(step_s));
      compute += since(t0);
    }
    const double stalled = loader.waited_seconds() - waited_first;
    r.rows.push_back(measure("loader_stall_fraction", stalled / (stalled + compute), "fraction of step time"));
    r.rows.push_back(measure("loader_step_ms", step_s * 1e3, "ms simulated compute per step"));
    r.notes.push_back("stall: " + std::to_string(steps) + " steps of b = " + std::to_string(b) + " tokens, " +
                      fmt(o.compute_ms_per_8k) + " ms compute per 8192 tokens, prefetch depth " +
                      std::to_string(o.prefetch_depth) + "; the first batch's wait (pipeline fill) excluded");
  }

  // 4. attention cost per kept token over one epoch.
  const int64_t md = o.model_dim;
  const std::string unit = "FLOP/token (fwd, 1 layer, H*D=" + std::to_string(md) + ")";
  const data::AttentionCost dd8 = data::dd_attention_cost(*dd);
  const data::AttentionCost c2 = data::concat_attention_cost(off, 2048, false);
  const data::AttentionCost c8 = data::concat_attention_cost(off, 8192, false);
  const data::AttentionCost c8m = data::concat_attention_cost(off, 8192, true);
  r.rows.push_back(measure("dd_dropped_token_fraction", double(dd->dropped_tokens()) / double(dd->input_tokens()),
                           "fraction (l mod 2^m)"));
  r.rows.push_back(measure("dd8k_flops_per_token", dd8.flops_per_token(md), unit));
  r.rows.push_back(measure("concat2k_flops_per_token", c2.flops_per_token(md), unit));
  r.rows.push_back(measure("concat8k_flops_per_token", c8.flops_per_token(md), unit));
  r.rows.push_back(measure("concat8k_docmask_flops_per_token", c8m.flops_per_token(md), unit));
  r.rows.push_back(measure("dd8k_over_concat2k", dd8.flops_per_token(md) / c2.flops_per_token(md), "ratio"));
  r.rows.push_back(measure("dd8k_over_concat8k", dd8.flops_per_token(md) / c8.flops_per_token(md), "ratio"));
  r.rows.push_back(measure("dd8k_over_concat8k_docmask", dd8.flops_per_token(md) / c8m.flops_per_token(md), "ratio"));
  r.notes.push_back("DD buckets 2^" + std::to_string(o.range.min_log2) + "..2^" + std::to_string(o.range.max_log2) +
                    ": " + std::to_string(dd->num_pieces()) + " pieces; " + std::to_string(dd->short_documents()) +
                    " documents shorter than 2^m (all their tokens dropped), " +
                    std::to_string(dd->long_documents()) + " longer than 2^M (cut)");

  const auto& h = ps.lengths;
  for (size_t k = 0; k < h.docs().size(); ++k)
    if (h.docs()[k]) {
      r.histogram_measures.push_back(measure("docs_len_log2_" + std::to_string(k), h.docs()[k],
                                             "documents of [2^" + std::to_string(k) + ", 2^" + std::to_string(k + 1) + ") tokens"));
      r.histogram.push_back(Row()
                                .add("length", "[2^" + std::to_string(k) + ", 2^" + std::to_string(k + 1) + ")")
                                .add("documents", h.docs()[k])
                                .add("tokens", h.tokens()[k]));
    }
  return r;
}
#else
DataBenchResult run_data_bench(const DataBenchOptions&) {
  throw Unsupported("bench data: this build has no HDF5 token store (configure with -DLONGHAUL_WITH_HDF5=ON)");
}
#endif

}  // namespace longhaul::bench
