#include "train/run.h"

#include <ATen/ATen.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <new>
#include <sstream>
#include <utility>

#include "core/data_limit.h"
#include "core/errors.h"
#include "data/decomposition.h"
#include "data/files.h"
#include "data/tokens_per_step.h"
#include "train/degree_schedule.h"
#include "train/device.h"
#include "train/host_share.h"
#include "train/preflight.h"
#include "longhaul/config.h"
#if LONGHAUL_WITH_HDF5
#include "data/hdf5/store_reader.h"
#endif

namespace longhaul::train {
namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

// The recall task's size and seed for this run.
void size_task(const TrainOptions& o, RunOptions& r) {
  r.task.min_log2 = o.buckets.min_log2;
  r.task.max_log2 = o.buckets.max_log2;
  r.task.seed = 1234 + o.seed;
  if (r.task.tokens == 0) r.task.tokens = std::max<int64_t>(int64_t(1) << 18, r.steps * o.tokens_per_step * 5 / 4);
}

std::string describe_task(const RunOptions& r) {
  std::ostringstream os;
  os << "the recall task (" << r.task.tokens << " tokens, documents of 2^" << r.task.min_log2 << "…2^"
     << r.task.max_log2 << ")";
  return os.str();
}

#if LONGHAUL_WITH_HDF5
// The embedded recall task's store, written by rank 0 into the workdir.
std::string write_task(const CommPtr& world, RunOptions& r, RunObserver& observer) {
  const std::string path = data::files::join(r.workdir, "recall_task.h5");
  if (world->rank() == 0) {
    write_task_store(path, r.task);
    observer.note("wrote " + describe_task(r) + " to " + path);
  }
  world->barrier()->wait();
  return path;
}
#endif

// A token store from `longhaul prep` (`what` names it in errors).
std::shared_ptr<data::TokenSource> open_store(const std::string& path, data::StoreVerify verify, const char* what) {
#if LONGHAUL_WITH_HDF5
  (void)what;  // the reader's own errors name the file
  data::StoreReaderOptions store_options;
  store_options.verify = verify;
  return std::make_shared<data::TokenStoreReader>(path, store_options);
#else
  (void)verify;
  throw InvalidArgument(detail::str_cat("train: reading ", what, " '", path,
                                        "' needs a build with HDF5 (LONGHAUL_WITH_HDF5)"));
#endif
}

// The held-out store of --eval-data: its tokens must fit the model, and its documents the buckets.
std::shared_ptr<data::TokenSource> open_eval_source(const TrainOptions& o, const RunOptions& r) {
  if (r.eval_data.empty()) return nullptr;
  LH_CHECK(r.eval_tokens >= 1, "train: --eval-tokens ", r.eval_tokens, ": expected a number of tokens >= 1");
  std::shared_ptr<data::TokenSource> source = open_store(r.eval_data, r.verify_data, "the evaluation store (--eval-data)");
  LH_CHECK(source->vocab_size() <= o.model.vocab, "train: the evaluation store ", r.eval_data, " has a vocabulary of ",
           source->vocab_size(), " tokens, the model's is ", o.model.vocab, " (the training data's or --vocab)");
  LH_CHECK(!data::Decomposition(source->doc_offsets(), o.buckets).empty(), "train: the evaluation store ", r.eval_data,
           " holds no document of at least 2^", o.buckets.min_log2, " = ", o.buckets.min_len(),
           " tokens (the shortest bucket, --min-log2)");
  return source;
}

// The run's tokens: the store at r.data, or the embedded task (a store in the workdir; in memory
// on builds without HDF5, e.g. the GPU bundle).
std::shared_ptr<data::TokenSource> open_source(const CommPtr& world, const TrainOptions& o, RunOptions& r,
                                               RunObserver& observer) {
  const bool task = r.data.empty();
  if (task) size_task(o, r);
#if LONGHAUL_WITH_HDF5
  if (task) r.data = write_task(world, r, observer);
  // The task's store was written here: not verified.
  return open_store(r.data, task ? data::StoreVerify::Never : r.verify_data, "the token store (--data)");
#else
  LH_CHECK(task, "train: reading the token store '", r.data, "' needs a build with HDF5 (LONGHAUL_WITH_HDF5)");
  if (world->rank() == 0) observer.note("generated " + describe_task(r) + " in memory (a build without HDF5)");
  return task_source(r.task);
#endif
}

// Every rank must agree to stop (a signal may reach only some): one tiny all-reduce.
int agreed_signal(const CommPtr& world) {
  at::Tensor flag = at::full({1}, double(g_signal.load()), at::kDouble);
  world->all_reduce(flag, ReduceOp::Max)->wait();
  return static_cast<int>(flag.item<double>());
}

// Runs the training loop's work (each step with its evaluation and checkpoint) under this process's
// share of what its host may give at that step, as the preflight ran its steps: the heap a run
// keeps (core/host_allocation.h) can still grow past the preflight's peak, and on a host that
// overcommits a step the host cannot hold is then a failed allocation, named, not a SIGKILL from
// the OOM killer. Without a share (thread-ranks, CUDA, --no-host-ceiling) the work runs as it is.
class StepCeiling {
 public:
  StepCeiling(const HostShare& share, int rank, std::string checkpoint, int64_t saved)
      : saved(saved), share_(share), rank_(rank), checkpoint_(std::move(checkpoint)) {}

  void run(const std::function<void()>& work) const {
    if (!share_.limited) return work();
    const HostShare now = host_share_now(share_);
    const double held = double(data_segment_bytes());
    auto out_of_memory = [&](const std::string& what) {
      const std::string standing = saved < 0 ? std::string("no checkpoint was written")
                                             : detail::str_cat("the checkpoint ", checkpoint_, " holds step ", saved);
      return c10::OutOfMemoryError({"run_training", __FILE__, static_cast<uint32_t>(__LINE__)},
                                   step_out_of_memory_message(stage, rank_, what, held, now, standing));
    };
    try {
      const ScopedDataLimit ceiling(static_cast<int64_t>(now.bytes));
      work();
    } catch (const c10::OutOfMemoryError& e) {
      throw out_of_memory(e.what_without_backtrace());
    } catch (const std::bad_alloc& e) {
      throw out_of_memory(e.what());
    }
  }

  std::string stage;  // what runs now ("step 12", "the checkpoint of step 12"), for the message
  int64_t saved;      // the step the checkpoint holds; -1: none written

 private:
  HostShare share_;
  int rank_;
  std::string checkpoint_;
};

}  // namespace

RunResult run_training(const CommPtr& world, TrainOptions o, RunOptions r, RunObserver& observer) {
  const bool root = world->rank() == 0;
  training_device(o.device);  // a device that does not exist is refused before anything is written
  data::files::create_directories(r.workdir);
  RunResult result;
  result.checkpoint = r.checkpoint.empty() ? data::files::join(r.workdir, "checkpoint.lhc") : r.checkpoint;
  data::files::check_writable_file(result.checkpoint, "train: the checkpoint", " (--checkpoint)");
  // The model's shape is refused before anything is read or written (the vocabulary, when not
  // given, comes from the data and is checked with it).
  ModelOptions shape = o.model;
  shape.vocab = r.vocab > 0 ? r.vocab : 2;
  shape.validate();
  DegreeSchedule::check_fixed_degree(o.cp, world->size());
  // The sampler's rule on tokens per step, too: the trainer's sampler hands out a whole step (one
  // data-parallel "rank") and each group takes its share.
  if (o.sampler == SamplerKind::DD) {
    data::check_tokens_per_step("DDSampler", o.tokens_per_step, 1, o.buckets.max_len(), "2^M");
  } else {
    data::check_tokens_per_step("ConcatChunkSampler", o.tokens_per_step, 1, o.buckets.max_len(), "L");
  }
  check_micro_batches(o.micro_batches, o.tokens_per_step);
  // A held-out store that is not there is named before the task's store is written.
  LH_CHECK(r.eval_data.empty() || data::files::is_regular_file(r.eval_data), "train: the evaluation store (--eval-data) '",
           r.eval_data, "' is not a file");
  const bool task = r.data.empty();
  const std::shared_ptr<data::TokenSource> source = open_source(world, o, r, observer);
  o.optim.total_steps = r.steps;
  o.model.seed = o.seed;
  o.model.vocab = r.vocab > 0 ? r.vocab : source->vocab_size();
  const std::shared_ptr<data::TokenSource> eval_source = open_eval_source(o, r);
  Trainer trainer(world, source, o);
  if (r.resume && data::files::exists(result.checkpoint)) {
    trainer.load(result.checkpoint);
    // Every rank loaded the same checkpoint: all refuse together, and the checkpoint stays as it was.
    LH_CHECK(trainer.steps_done() < r.steps, "train: the checkpoint ", result.checkpoint, " is at step ",
             trainer.steps_done(), ", not before --steps ", r.steps, ": nothing to train (give --steps > ",
             trainer.steps_done(), ")");
    if (root) observer.note("resumed from " + result.checkpoint + " at step " + std::to_string(trainer.steps_done()));
  }
  observer.started(trainer);
  if (r.preflight) observer.memory_checked(trainer.preflight(trainer.preflight_shapes()));
  // On the CPU every step runs under each process's share of its host's memory (a collective).
  const HostShare share = r.host_ceiling && !training_device(o.device).is_cuda() ? host_share(*world) : HostShare{};
  if (share.limited) start_thread_pool();
  StepCeiling ceiling(share, world->rank(), result.checkpoint, trainer.steps_done() > 0 ? trainer.steps_done() : -1);
  if (r.handle_signals) {
    g_signal.store(0);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
  }
  auto evaluate = [&](bool final) {
    ceiling.stage = detail::str_cat("the evaluation after step ", trainer.steps_done());
    if (task && r.eval_docs > 0)
      observer.evaluated(trainer.steps_done(),
                         trainer.evaluate(r.task.min_log2, r.task.max_log2, r.eval_docs, r.task.pairs, r.task.seed), final);
    if (eval_source) observer.validated(trainer.steps_done(), trainer.validation_loss(*eval_source, r.eval_tokens), final);
  };
  double tokens = 0, seconds = 0;
  const int64_t first = trainer.steps_done();
  while (trainer.steps_done() < r.steps) {
    ceiling.run([&] {
      ceiling.stage = detail::str_cat("step ", trainer.steps_done() + 1);
      StepStats s = trainer.step();
      if (trainer.steps_done() == first + 2) tokens = seconds = 0;  // drop the warm-up step once a second is timed
      tokens += double(s.tokens);
      seconds += s.seconds;
      observer.step(s);
      if (r.eval_every > 0 && s.step % r.eval_every == 0 && s.step < r.steps) evaluate(false);
      result.signal = agreed_signal(world);
      result.stopped_after = r.stop_after > 0 && trainer.steps_done() - first >= r.stop_after;
      if (result.signal || result.stopped_after || (r.save_every > 0 && s.step % r.save_every == 0)) {
        ceiling.stage = detail::str_cat("the checkpoint of step ", s.step);
        trainer.save(result.checkpoint);
        ceiling.saved = s.step;
      }
    });
    if (result.signal || result.stopped_after) break;
  }
  result.steps_done = trainer.steps_done();
  result.tokens_per_s = seconds > 0 ? tokens / seconds : 0;
  if (result.signal || result.stopped_after) return result;
  ceiling.run([&] {
    ceiling.stage = detail::str_cat("the checkpoint of step ", trainer.steps_done());
    trainer.save(result.checkpoint);
    ceiling.saved = trainer.steps_done();
    evaluate(true);
  });
  return result;
}

}  // namespace longhaul::train
