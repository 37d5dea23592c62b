// `longhaul train`: trains the decoder-only transformer with context parallelism on a token
// store (made by `longhaul prep`), or — with no data given — on the embedded long-range task
// (associative recall, train/task.h), reporting retrieval accuracy by context length at the end.
// The run itself is train::run_training (train/run.h); this file parses flags and prints.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <tuple>
#include <utility>

#include "attention/mask.h"
#include "cli/cli.h"
#include "cli/output_check.h"
#include "core/errors.h"
#include "core/host_allocation.h"
#include "core/report.h"
#include "train/run.h"

namespace longhaul::cli {
namespace {

void progress(const train::StepStats& s, int64_t total) {
  const int width = 20;
  const int done = total ? static_cast<int>(width * s.step / total) : 0;
  std::fprintf(stderr, "\rtrain [%s%s] %lld/%lld  loss %.4f  L=%lld  %.0f tok/s ", std::string(done, '#').c_str(),
               std::string(width - done, '-').c_str(), static_cast<long long>(s.step), static_cast<long long>(total),
               s.loss, static_cast<long long>(s.seq_len), s.tokens_per_s());
  std::fflush(stderr);
}

// The exact value ("0x1.8p+1"): resumed runs are compared bitwise.
std::string hex(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", v);
  return buf;
}

void log_step(const train::StepStats& s, bool json) {
  if (json) {
    report::print_json(std::cout, {report::Row()
                                      .add("step", s.step)
                                      .add("loss", s.loss)
                                      .add("loss_bits", hex(s.loss))
                                      .add("skipped", int64_t(s.skipped))
                                      .add("seq_len", s.seq_len)
                                      .add("cp", int64_t(s.cp_degree))
                                      .add("passes", int64_t(s.passes))
                                      .add("tokens_per_s", s.tokens_per_s())
                                      .add("tokens", s.tokens)
                                      .add("lr", s.lr)
                                      .add("grad_norm", s.grad_norm)
                                      .add("seconds", s.seconds)
                                      .add("attention_s", s.attention_s)
                                      .add("attention_compute_s", s.attention_s - s.comm_wait_s)
                                      .add("comm_wait_s", s.comm_wait_s)
                                      .add("comm_wait_measured", int64_t(s.comm_wait_measured))
                                      .add("sync_s", s.sync_s)
                                      .add("rest_s", s.rest_s)});
  } else {
    char split[64] = "device time, comm included";  // a GPU: no host-side wait to split off
    if (s.comm_wait_measured)
      std::snprintf(split, sizeof split, "compute %.3f + comm wait %.3f", s.attention_s - s.comm_wait_s, s.comm_wait_s);
    std::printf("step %5lld  loss %.4f  seq_len %5lld  cp %d  %8.0f tok/s  lr %.2e  |g| %.3f  time %.3fs = attention %.3f "
                "(%s) + grad sync %.3f + rest %.3f\n",
                static_cast<long long>(s.step), s.loss, static_cast<long long>(s.seq_len), s.cp_degree, s.tokens_per_s(), s.lr,
                s.grad_norm, s.seconds, s.attention_s, split, s.sync_s, s.rest_s);
  }
  flush_stdout("the line of step " + std::to_string(s.step));
}

// Prints the run on rank 0: step lines or JSON rows, a progress bar on a terminal, accuracy rows.
class Printer : public train::RunObserver {
 public:
  Printer(int world_size, bool root, bool json, bool quiet, int64_t log_every, int64_t steps, std::string setup)
      : world_size_(world_size), root_(root), json_(json), quiet_(quiet), log_every_(log_every), steps_(steps),
        setup_(std::move(setup)), bar_(root && !quiet && !json && ::isatty(2)) {}

  void note(const std::string& text) override {
    if (!json_) LogLine() << "train: " << text;
  }
  void started(train::Trainer& t) override {
    if (!root_ || json_) return;
    const train::DegreeSchedule& d = t.degrees();
    LogLine() << "train: " << t.model().num_parameters() << " parameters (" << t.options().model.shape()
              << ", " << train::to_string(t.options().model.precision) << " on " << t.model().device() << "), world "
              << world_size_ << ", cp "
              << (d.automatic() ? "auto (length:degree " + d.describe() + ")" : d.describe() + " (fixed)") << ", "
              << setup_;
    if (!d.automatic()) return;
    LogLine() << "train: cp auto planned with kernel " << d.problem().kernel_gflops << " GFLOP/s, dense "
              << d.problem().dense_gflops << " GFLOP/s per rank, network " << t.options().network
              << "; predicted step (attention + dense, busiest rank), ms by degree:";
    for (const BucketDegree& b : d.table()) {
      LogLine line;
      line << "train:   L=" << b.length << " (" << b.sequences << " seqs)";
      for (const DegreeOption& opt : b.options)
        line << "  c=" << opt.degree << (opt.degree == b.degree ? "*" : "") << " "
             << (opt.feasible ? std::to_string(int64_t(opt.step_s * 1e3 + 0.5)) : std::string("does not fit"));
    }
  }
  void memory_checked(const std::vector<train::PreflightResult>& results) override {
    if (!root_) return;
    for (const auto& r : results) {
      if (!json_) LogLine() << "train: preflight: " << train::describe(r);
      const std::string warning = train::headroom_warning(r);
      if (!warning.empty()) LogLine() << warning;
    }
  }
  void step(const train::StepStats& s) override {
    if (!root_) return;
    if (!quiet_ && (json_ || s.step % log_every_ == 0)) log_step(s, json_);
    if (bar_) progress(s, steps_);
  }
  void evaluated(int64_t step, const std::vector<train::EvalRow>& rows, bool final) override {
    std::vector<report::Row> out;
    std::vector<std::pair<int64_t, double>> line;
    for (const auto& e : rows) {
      out.push_back(report::Row()
                        .add("eval", std::string("recall"))
                        .add("step", step)
                        .add("context", e.context)
                        .add("accuracy", e.accuracy())
                        .add("correct", e.correct)
                        .add("total", e.total));
      line.emplace_back(e.context, e.accuracy());
    }
    print_evaluation(step, out, line, final, "retrieval accuracy by context length", " (chance: 1/16)", "eval  ",
                     "accuracy");
  }
  void validated(int64_t step, const std::vector<train::LossRow>& rows, bool final) override {
    std::vector<report::Row> out;
    std::vector<std::pair<int64_t, double>> line;
    for (const auto& e : rows) {
      out.push_back(report::Row()
                        .add("eval", std::string("loss"))
                        .add("step", step)
                        .add("context", e.context)
                        .add("loss", e.loss)
                        .add("targets", e.targets)
                        .add("sequences", e.sequences));
      line.emplace_back(e.context, e.loss);
    }
    print_evaluation(step, out, line, final, "validation loss (nats per target) by context length", "", "val   ", "loss");
  }
  void finished() {
    if (bar_) std::fprintf(stderr, "\n");
  }

 private:
  // JSON rows; at the end a table under "# WHAT after N steps NOTE"; else one line "LABEL step N
  // VALUE  L: v ...".
  void print_evaluation(int64_t step, const std::vector<report::Row>& out,
                        const std::vector<std::pair<int64_t, double>>& line, bool final, const char* what,
                        const char* note, const char* label, const char* value) {
    if (!root_) return;
    if (bar_) std::fprintf(stderr, "\n");  // below the progress bar
    if (final) bar_ = false;
    if (json_) {
      report::print_json(std::cout, out);
    } else if (final) {
      std::cout << "# " << what << " after " << step << " steps" << note << "\n";
      report::print_table(std::cout, out);
    } else {
      std::printf("%sstep %5lld  %s", label, static_cast<long long>(step), value);
      for (const auto& [context, v] : line) std::printf("  %lld: %.3f", static_cast<long long>(context), v);
      std::printf("\n");
    }
    flush_stdout(std::string("the ") + label + "line of step " + std::to_string(step));
  }

  int world_size_;
  bool root_, json_, quiet_;
  int64_t log_every_, steps_;
  std::string setup_;
  bool bar_;
};

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  InitOptions init_opts;
  double timeout_s = 300;
  train::RunOptions r;
  train::TrainOptions o;
  std::string strategy = "ring", layout = "zigzag", sampler = "dd", curriculum = "grow_p2", cp = "1", dtype = "fp32";
  int64_t log_every = 1;
  double loss_chunk_mib = double(o.loss_chunk_bytes >> 20);
  bool json = false, quiet = false, verify_always = false, verify_never = false, no_preflight = false, no_host_ceiling = false,
       release_host_memory = false;
  po::options_description desc("longhaul train");
  desc.add_options()
      ("data", po::value(&r.data), "token store from `longhaul prep` (none: generate the embedded recall task)")
      ("verify-data", po::bool_switch(&verify_always),
       "read the whole store in a child process before every run (default: once per file on this machine, "
       "stamped after; stores from `longhaul prep` here count as read), so a corrupt or crafted file is "
       "refused with a named error instead of crashing the HDF5 library inside training")
      ("no-verify-data", po::bool_switch(&verify_never), "never read the store in a child first (trust the file)")
      ("workdir", po::value(&r.workdir)->default_value(r.workdir), "where the task's store and checkpoints go")
      ("steps", po::value(&r.steps)->default_value(r.steps), "optimiser steps of this run (in total, counting a resumed run's)")
      ("cp", po::value(&cp)->default_value(cp),
       "context-parallel group size (a divisor of the world; the rest is data parallel), or auto: each DD "
       "bucket's degree chosen by the planner (fastest that fits --memory-gib)")
      ("memory-gib", po::value(&o.memory_gib)->default_value(0), "--cp auto: memory per rank for one attention layer (0: no limit)")
      ("network", po::value(&o.network)->default_value(o.network), "--cp auto: this-machine, nvlink, infiniband or pcie")
      ("kernel-gflops", po::value(&o.kernel_gflops)->default_value(0), "--cp auto: attention GFLOP/s per rank (0: measured on every rank, the slowest taken)")
      ("dense-gflops", po::value(&o.dense_gflops)->default_value(0), "--cp auto: the model's GFLOP/s outside attention per rank (0: measured likewise)")
      ("strategy", po::value(&strategy)->default_value(strategy), "CP strategy: ring, tokenring, ulysses, hybrid, allgather, rsa")
      ("ulysses-degree", po::value(&o.cp_options.ulysses_degree)->default_value(1), "hybrid: Ulysses degree")
      ("layout", po::value(&layout)->default_value(layout), "zigzag, striped, contiguous or balanced (by masked area)")
      ("mask", po::value(&o.mask)->default_value(o.mask),
       "attention mask family on each step's documents, never across its sequences (a family without documents "
       "holds within each document; share_question and causal_blockwise within each sequence): causal_document, "
       "sliding_window_causal, block_causal_document, prefix_lm_document, share_question, causal_blockwise, "
       "global_sliding_window, ...")
      ("mask-param", po::value(&o.mask_param)->default_value(0),
       "the family's parameter: window w, prefix or block size")
      ("mask-param2", po::value(&o.mask_param2)->default_value(0), "global_sliding_window: the global tokens")
      ("sampler", po::value(&sampler)->default_value(sampler), "dd (dataset decomposition), concat or concat_docmask")
      ("curriculum", po::value(&curriculum)->default_value(curriculum), "DD: uniform, grow_linear, grow_p2, natural")
      ("cycles", po::value(&o.cycles)->default_value(o.cycles), "DD cycles per epoch")
      ("min-log2", po::value(&o.buckets.min_log2)->default_value(o.buckets.min_log2), "shortest sequence 2^m")
      ("max-log2", po::value(&o.buckets.max_log2)->default_value(o.buckets.max_log2), "longest sequence 2^M (concat: its length)")
      ("tokens-per-step", po::value(&o.tokens_per_step)->default_value(o.tokens_per_step), "tokens per step over the world")
      ("micro-batches", po::value(&o.micro_batches)->default_value(o.micro_batches),
       "gradient accumulation: each rank runs its share of a step in N passes, one after the other, "
       "and their gradients add up before the one update (a share of fewer sequences: one pass each). "
       "The same step, about 1/N of the activations at once; a divisor of --tokens-per-step")
      ("vocab", po::value(&r.vocab)->default_value(0), "model vocabulary (0: the data's)")
      ("dim", po::value(&o.model.dim)->default_value(o.model.dim), "model width")
      ("layers", po::value(&o.model.layers)->default_value(o.model.layers), "transformer blocks")
      ("heads", po::value(&o.model.heads)->default_value(o.model.heads), "attention heads")
      ("kv-heads", po::value(&o.model.kv_heads)->default_value(o.model.kv_heads), "key/value heads (GQA)")
      ("hidden", po::value(&o.model.mlp_hidden)->default_value(0), "SwiGLU hidden size (0: 8/3 · dim)")
      ("rope-theta", po::value(&o.model.rope_theta)->default_value(o.model.rope_theta),
       "rotary base: pair i of a head turns by position · theta^(-2i/head_dim); long contexts take a larger one")
      ("checkpoint-blocks", po::bool_switch(&o.model.checkpoint_blocks), "recompute each block in backward")
      ("loss-chunk-mib", po::value(&loss_chunk_mib)->default_value(loss_chunk_mib),
       "the output head and the loss run over chunks of rows whose logits take at most this many MiB, so a "
       "pass never holds its [tokens, vocab] logits whole (nor their gradient); 0: the plain head, logits whole "
       "and torch's cross-entropy")
      ("no-preflight", po::bool_switch(&no_preflight),
       "skip the memory preflight (before step 1, the longest sequences' step and the longest shard's run twice "
       "on made-up tokens, each with an update that changes nothing: one that does not fit stops the run there, "
       "named, exit 7)")
      ("no-host-ceiling", po::bool_switch(&no_host_ceiling),
       "run the steps without a ceiling on each process's memory (by default, on the CPU, each step may grow a "
       "process by its share of what its host, or the job's memory cgroup, may still give: past it the step "
       "fails named, exit 7, where the OOM killer would end the run)")
      ("release-host-memory", po::bool_switch(&release_host_memory),
       "give freed host memory back to the system at once, as glibc does with blocks over 32 MiB (every step "
       "then faults its large buffers in again: steps of 64K tokens per rank ran 2x slower on the CPU); by "
       "default the process keeps it for the next step, so its resident set stays at the largest step's")
      ("device", po::value(&o.device)->default_value(o.device),
       "cpu or cuda: one GPU per rank (local rank % visible devices); parameters, optimiser state, batches and "
       "the step live there, CP exchanges CUDA tensors over the world's device transport (NCCL)")
      ("dtype", po::value(&dtype)->default_value(dtype),
       "fp32; fp64 (parameters and compute in float64); or bf16: float32 master weights and optimiser state, "
       "matmuls and attention in bfloat16, loss and its softmax in float32. No loss scaling: bfloat16 has "
       "float32's exponent range, so gradients do not underflow as in float16 (which is not offered)")
      ("lr", po::value(&o.optim.lr)->default_value(o.optim.lr, "3e-3"), "peak learning rate (AdamW)")
      ("warmup", po::value(&o.optim.warmup)->default_value(o.optim.warmup), "warm-up steps")
      ("min-lr-ratio", po::value(&o.optim.min_lr_ratio)->default_value(o.optim.min_lr_ratio, "0.1"), "cosine floor / lr")
      ("weight-decay", po::value(&o.optim.weight_decay)->default_value(o.optim.weight_decay, "0.1"), "AdamW weight decay")
      ("clip", po::value(&o.optim.clip)->default_value(o.optim.clip), "gradient norm clip (0: none)")
      ("skip-nonfinite", po::bool_switch(&o.optim.skip_nonfinite),
       "drop a step whose loss or gradient norm is NaN or infinite and go on (default: stop with an error, "
       "nothing updated)")
      ("seed", po::value(&o.seed)->default_value(0), "initialisation and data order")
      ("checkpoint", po::value(&r.checkpoint), "checkpoint file (default WORKDIR/checkpoint.lhc)")
      ("save-every", po::value(&r.save_every)->default_value(0), "checkpoint every N steps (0: only at the end and on SIGINT/SIGTERM)")
      ("resume", po::bool_switch(&r.resume), "continue from the checkpoint when it exists")
      ("stop-after", po::value(&r.stop_after)->default_value(0),
       "stop (with a checkpoint, like SIGTERM) after N steps of this run: interruption tests")
      ("eval-docs", po::value(&r.eval_docs)->default_value(r.eval_docs), "task: held-out documents per length for the accuracy table")
      ("eval-every", po::value(&r.eval_every)->default_value(0),
       "task, --eval-data: an accuracy / loss row per length every N steps (0: only at the end)")
      ("eval-data", po::value(&r.eval_data),
       "held-out token store (`longhaul prep`): the validation loss per length (its documents cut into the "
       "run's buckets), every --eval-every steps and at the end")
      ("eval-tokens", po::value(&r.eval_tokens)->default_value(r.eval_tokens),
       "--eval-data: tokens per length, the bucket's first pieces (at least one sequence)")
      ("task-pairs", po::value(&r.task.pairs)->default_value(1),
       "task: key-value pairs per document (1: passkey retrieval; more: associative recall, slower to learn)")
      ("task-tokens", po::value(&r.task.tokens)->default_value(0), "task: tokens to generate (0: enough for the steps)")
      ("log-every", po::value(&log_every)->default_value(1), "a text line every N steps (--json: every step)")
      ("json", po::bool_switch(&json), "one JSON object per step (and per accuracy row) on rank 0")
      ("quiet,q", po::bool_switch(&quiet), "no per-step lines and no progress bar");
  add_world_options(desc, init_opts, timeout_s);
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "longhaul train [--data STORE.h5] [--steps N] [--cp P] [--strategy ring] [--sampler dd|concat] ...\n"
             "  mpirun -np 4 longhaul train --cp 2     # 2 CP groups of 2 ranks, data parallel between them\n"
             "  mpirun -np 4 longhaul train --cp auto  # each bucket's degree from the planner"))
    return 0;
  o.cp = train::cp_degree_from_string(cp, "train: --cp");
  o.model.precision = train::precision_from_string(dtype);
  if (verify_always && verify_never) throw InvalidArgument("train: --verify-data and --no-verify-data contradict each other");
  r.preflight = !no_preflight;
  r.host_ceiling = !no_host_ceiling;
  // Values no run can use, named before any work.
  for (const auto& [flag, value, least] :
       {std::tuple<const char*, double, double>{"--steps", double(r.steps), 1}, {"--vocab", double(r.vocab), 0},
        {"--hidden", double(o.model.mlp_hidden), 0}, {"--warmup", double(o.optim.warmup), 0},
        {"--clip", o.optim.clip, 0}, {"--weight-decay", o.optim.weight_decay, 0},
        {"--log-every", double(log_every), 1}, {"--eval-every", double(r.eval_every), 0},
        {"--eval-docs", double(r.eval_docs), 0}, {"--save-every", double(r.save_every), 0},
        {"--stop-after", double(r.stop_after), 0}, {"--task-tokens", double(r.task.tokens), 0},
        {"--memory-gib", o.memory_gib, 0}, {"--kernel-gflops", o.kernel_gflops, 0},
        {"--dense-gflops", o.dense_gflops, 0}, {"--loss-chunk-mib", loss_chunk_mib, 0}})
    LH_CHECK(std::isfinite(value) && value >= least, "train: ", flag, " ", value, ": expected a number >= ", least);
  check_head_counts(vm, "train", o.model.heads, o.model.kv_heads);
  LH_CHECK(std::isfinite(o.optim.lr) && o.optim.lr > 0, "train: --lr ", o.optim.lr, ": expected a number > 0");
  LH_CHECK(std::isfinite(o.model.rope_theta) && o.model.rope_theta > 1, "train: --rope-theta ", o.model.rope_theta,
           ": expected a number > 1 (10000 is the usual base)");
  LH_CHECK(o.optim.min_lr_ratio >= 0 && o.optim.min_lr_ratio <= 1, "train: --min-lr-ratio ", o.optim.min_lr_ratio,
           ": expected a fraction of --lr in [0, 1]");
  o.loss_chunk_bytes = static_cast<int64_t>(loss_chunk_mib * double(1 << 20));
  r.verify_data = verify_always ? data::StoreVerify::Always
                  : verify_never ? data::StoreVerify::Never : data::StoreVerify::Once;
  o.cp_options.strategy = strategy_from_string(strategy);
  o.cp_options.layout = layout_from_string(layout);
  o.sampler = train::sampler_from_string(sampler);
  o.curriculum = data::curriculum_from_string(curriculum);
  {
    const auto& fams = masks::family_names();
    if (std::find(fams.begin(), fams.end(), o.mask) == fams.end()) masks::make(o.mask, 1);  // names the known ones
  }
  init_opts.log_config = !json;
  if (!release_host_memory) keep_freed_host_memory();  // before MPI and torch allocate
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    check_same_options(*world.comm(), desc, vm, "train");
    const bool root = world.rank() == 0;
    Printer printer(world.size(), root, json, quiet, log_every, r.steps,
                    strategy + "/" + layout + ", mask " + o.mask + ", sampler " + sampler +
                        (o.sampler == train::SamplerKind::DD
                             ? " (" + curriculum + ", " + std::to_string(o.cycles) + " cycles)"
                             : std::string()) +
                        ", " + std::to_string(o.tokens_per_step) +
                        " tokens/step" +
                        (o.micro_batches > 1 ? " in " + std::to_string(o.micro_batches) + " micro-batches" : ""));
    const train::RunResult res = train::run_training(world.comm(), o, r, printer);
    printer.finished();
    if (res.stopped_after) {
      if (root && !json)
        LogLine() << "train: stopped after " << r.stop_after << " steps; checkpoint " << res.checkpoint;
      return 0;
    }
    if (res.signal) {
      if (root)
        LogLine() << "train: signal " << res.signal << ": checkpoint at step " << res.steps_done << " in "
                  << res.checkpoint;
      return 128 + res.signal;
    }
    if (root && !json)
      LogLine() << "train: " << res.steps_done << " steps, " << static_cast<int64_t>(res.tokens_per_s)
                << " tokens/s (after the first step, a warm-up); checkpoint " << res.checkpoint;
    return 0;
  });
}

}  // namespace longhaul::cli
