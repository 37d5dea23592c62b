#include "benchmarks/dd_cp/dd_cp_bench.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>

#include "benchmarks/data/data_bench.h"
#include "core/errors.h"
#include "data/files.h"
#include "longhaul/config.h"
#include "train/trainer.h"
#if LONGHAUL_WITH_HDF5
#include "data/hdf5/prep.h"
#include "data/hdf5/store_reader.h"
#endif

namespace longhaul::bench {
#if LONGHAUL_WITH_HDF5
namespace {

// The step's wall time and its compute (attention + rest) on the busiest rank (maxima over ranks),
// and the mean over ranks of its parts, so that the parts add up to about the whole.
std::vector<double> step_times(const CommPtr& world, const train::StepStats& st) {
  at::Tensor mx = at::tensor(std::vector<double>{st.seconds, st.attention_s + st.rest_s}, at::kDouble);
  at::Tensor sum = at::tensor(std::vector<double>{st.attention_s, st.comm_wait_s, st.sync_s, st.rest_s}, at::kDouble);
  world->all_reduce(mx, ReduceOp::Max)->wait();
  world->all_reduce(sum)->wait();
  sum.div_(world->size());
  return {mx[0].item<double>(), sum[0].item<double>(), sum[1].item<double>(), sum[2].item<double>(),
          sum[3].item<double>(), mx[1].item<double>()};
}

struct Sums {
  int64_t steps = 0, tokens = 0;
  double seconds = 0, attention = 0, wait = 0, sync = 0, rest = 0, busiest_compute = 0;
  int degree = 1;
};

std::string store_path(const CommPtr& world, const DdCpBenchOptions& o, std::vector<std::string>& notes,
                       std::string& temp) {
  if (!o.data.empty()) return o.data;
  std::string dir = o.workdir;
  if (dir.empty()) {  // named after rank 0's process, so every rank knows it
    at::Tensor pid = at::full({1}, world->rank() == 0 ? double(::getpid()) : 0.0, at::kDouble);
    world->all_reduce(pid, ReduceOp::Max)->wait();
    dir = data::files::join("/tmp", "longhaul_bench_dd_cp_" + std::to_string(int64_t(pid.item<double>())));
    temp = dir;
  }
  const std::string store = data::files::join(dir, "corpus.h5");
  if (world->rank() == 0) {
    data::files::create_directories(dir);
    data::PrepOptions po;
    po.inputs = {o.corpus.empty() ? default_corpus() : o.corpus};
    po.output = store;
    po.input.glob = "*.py";
    if (o.corpus.empty()) po.input.exclude_dirs = {"site-packages", "__pycache__"};
    const data::PrepSummary ps = data::prep(po);
    notes.push_back("corpus: " + po.inputs[0] + " (" + std::to_string(ps.files) + " files, " +
                    std::to_string(ps.documents) + " documents, " + std::to_string(ps.tokens) +
                    " byte tokens), prepped in " + std::to_string(ps.seconds) + " s");
  }
  world->barrier()->wait();
  return store;
}

}  // namespace

DdCpBenchResult run_dd_cp_bench(const CommPtr& world, const DdCpBenchOptions& o) {
  DdCpBenchResult r;
  const int W = world->size();
  std::string temp;
  const std::string store = store_path(world, o, r.notes, temp);
  auto source = std::make_shared<data::TokenStoreReader>(store);
  std::vector<std::string> configs = o.configs;
  if (configs.empty()) {
    configs.push_back("auto");
    for (int c = W; c >= 1; --c)
      if (W % c == 0) configs.push_back(std::to_string(c));
  }
  train::TrainOptions base = o.train;
  base.model.vocab = std::max<int64_t>(base.model.vocab, source->vocab_size());
  // The planner's table (from auto's inputs): the predictions of every bucket × degree.
  std::map<std::pair<int64_t, int>, double> predicted;
  std::map<std::string, Sums> totals;
  std::map<std::pair<std::string, int64_t>, Sums> per_bucket;
  std::map<std::string, std::string> described;
  double fixed_w_tps = 0;
  std::vector<int> degrees;  // all parsed before any run
  for (const std::string& cfg : configs) degrees.push_back(train::cp_degree_from_string(cfg, "bench dd-cp: --configs"));
  for (size_t i = 0; i < configs.size(); ++i) {
    const std::string& cfg = configs[i];
    train::TrainOptions t = base;
    t.cp = degrees[i];
    train::Trainer trainer(world, source, t);
    described[cfg] = trainer.degrees().describe();
    if (trainer.degrees().automatic()) {
      for (const BucketDegree& b : trainer.degrees().table())
        for (const DegreeOption& opt : b.options) predicted[{b.length, opt.degree}] = opt.step_s;
      r.notes.push_back("auto planned with kernel " + std::to_string(trainer.degrees().problem().kernel_gflops) +
                        " GFLOP/s and dense " + std::to_string(trainer.degrees().problem().dense_gflops) +
                        " GFLOP/s per rank (measured on every rank at once, the slowest taken; dense: the model's own "
                        "non-attention rate), network " + t.network +
                        ": " + described[cfg]);
    }
    for (int64_t i = 0; i < o.warmup; ++i) trainer.step();
    Sums& s = totals[cfg];
    for (int64_t i = 0; i < o.steps; ++i) {
      const train::StepStats st = trainer.step();
      const auto m = step_times(world, st);
      for (Sums* x : {&s, &per_bucket[{cfg, st.seq_len}]}) {
        x->steps += 1;
        x->tokens += st.tokens;
        x->seconds += m[0], x->attention += m[1], x->wait += m[2], x->sync += m[3], x->rest += m[4];
        x->busiest_compute += m[5];
        x->degree = st.cp_degree;
      }
    }
    if (cfg == std::to_string(W)) fixed_w_tps = double(s.tokens) / s.seconds;
  }
  std::vector<std::string> shown;  // a configuration given twice (interleaved passes) is one pooled row
  for (const std::string& cfg : configs) {
    if (std::find(shown.begin(), shown.end(), cfg) != shown.end()) continue;
    shown.push_back(cfg);
    const Sums& s = totals[cfg];
    const double tps = double(s.tokens) / s.seconds;
    r.rows.push_back(Row()
                         .add("cp", cfg)
                         .add("degrees", described[cfg])
                         .add("steps", s.steps)
                         .add("tokens_per_s", tps)
                         .add("vs_cp_w", fixed_w_tps > 0 ? tps / fixed_w_tps : 0.0)
                         .add("attention_compute", (s.attention - s.wait) / s.seconds)
                         .add("comm_wait", s.wait / s.seconds)
                         .add("grad_sync", s.sync / s.seconds)
                         .add("rest", s.rest / s.seconds)
                         .add("step_ms", 1e3 * s.seconds / double(s.steps)));
  }
  for (const auto& [key, s] : per_bucket) {
    const auto& [cfg, len] = key;
    const int degree = s.degree;
    const double measured = s.busiest_compute / double(s.steps);
    auto it = predicted.find({len, degree});
    const double pred = it == predicted.end() ? 0.0 : it->second;
    r.buckets.push_back(Row()
                            .add("cp", cfg)
                            .add("seq_len", len)
                            .add("degree", int64_t(degree))
                            .add("steps", s.steps)
                            .add("step_ms", 1e3 * s.seconds / double(s.steps))
                            .add("measured_compute_ms", 1e3 * measured)
                            .add("predicted_ms", 1e3 * pred)
                            .add("predicted_over_measured", pred > 0 && measured > 0 ? pred / measured : 0.0));
  }
  source.reset();
  if (!temp.empty() && world->rank() == 0) data::files::remove_tree(temp);
  return r;
}
#else
DdCpBenchResult run_dd_cp_bench(const CommPtr&, const DdCpBenchOptions&) {
  throw Unsupported("bench dd-cp: needs a build with HDF5 (the token store)");
}
#endif

}  // namespace longhaul::bench
