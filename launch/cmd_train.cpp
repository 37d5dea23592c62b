// `longhaul train`: trains the decoder-only transformer with context parallelism on a token
// store (made by `longhaul prep`), or — with no data given — on the embedded long-range task
// (associative recall, train/task.h), reporting retrieval accuracy by context length at the end.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "benchmarks/common/report.h"
#include "data/files.h"
#include "launch/cli.h"
#include "longhaul/config.h"
#include "runtime/errors.h"
#include "train/task.h"
#include "train/trainer.h"
#if LONGHAUL_WITH_HDF5
#include "data/hdf5/store_reader.h"
#endif

namespace longhaul::cli {
namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

struct RunOptions {
  std::string data, workdir = "longhaul-train", checkpoint;
  int64_t steps = 200, save_every = 0, log_every = 1, stop_after = 0;
  bool resume = false, json = false, quiet = false;
  int eval_docs = 32;
  int64_t eval_every = 0;
  train::TaskOptions task;
};

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
    bench::print_json(std::cout, {bench::Row()
                                      .add("step", s.step)
                                      .add("loss", s.loss)
                                      .add("loss_bits", hex(s.loss))
                                      .add("seq_len", s.seq_len)
                                      .add("tokens_per_s", s.tokens_per_s())
                                      .add("tokens", s.tokens)
                                      .add("lr", s.lr)
                                      .add("grad_norm", s.grad_norm)
                                      .add("seconds", s.seconds)
                                      .add("attention_s", s.attention_s)
                                      .add("attention_compute_s", s.attention_s - s.comm_wait_s)
                                      .add("comm_wait_s", s.comm_wait_s)
                                      .add("sync_s", s.sync_s)
                                      .add("rest_s", s.rest_s)});
  } else {
    std::printf("step %5lld  loss %.4f  seq_len %5lld  %8.0f tok/s  lr %.2e  |g| %.3f  time %.3fs = attention %.3f "
                "(compute %.3f + comm wait %.3f) + grad sync %.3f + rest %.3f\n",
                static_cast<long long>(s.step), s.loss, static_cast<long long>(s.seq_len), s.tokens_per_s(), s.lr,
                s.grad_norm, s.seconds, s.attention_s, s.attention_s - s.comm_wait_s, s.comm_wait_s, s.sync_s,
                s.rest_s);
  }
  std::fflush(stdout);
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  InitOptions init_opts;
  double timeout_s = 300;
  RunOptions r;
  train::TrainOptions o;
  std::string strategy = "ring", layout = "zigzag", sampler = "dd", curriculum = "grow_p2";
  int64_t vocab = 0;
  po::options_description desc("longhaul train");
  desc.add_options()
      ("data", po::value(&r.data), "token store from `longhaul prep` (none: generate the embedded recall task)")
      ("workdir", po::value(&r.workdir)->default_value(r.workdir), "where the task's store and checkpoints go")
      ("steps", po::value(&r.steps)->default_value(r.steps), "optimiser steps of this run (in total, counting a resumed run's)")
      ("cp", po::value(&o.cp)->default_value(1), "context-parallel group size; the rest of the world is data parallel")
      ("strategy", po::value(&strategy)->default_value(strategy), "CP strategy: ring, tokenring, ulysses, hybrid, allgather, rsa")
      ("ulysses-degree", po::value(&o.cp_options.ulysses_degree)->default_value(1), "hybrid: Ulysses degree")
      ("layout", po::value(&layout)->default_value(layout), "zigzag, striped or contiguous")
      ("sampler", po::value(&sampler)->default_value(sampler), "dd (dataset decomposition), concat or concat_docmask")
      ("curriculum", po::value(&curriculum)->default_value(curriculum), "DD: uniform, grow_linear, grow_p2, natural")
      ("cycles", po::value(&o.cycles)->default_value(o.cycles), "DD cycles per epoch")
      ("min-log2", po::value(&o.buckets.min_log2)->default_value(o.buckets.min_log2), "shortest sequence 2^m")
      ("max-log2", po::value(&o.buckets.max_log2)->default_value(o.buckets.max_log2), "longest sequence 2^M (concat: its length)")
      ("tokens-per-step", po::value(&o.tokens_per_step)->default_value(o.tokens_per_step), "tokens per step over the world")
      ("vocab", po::value(&vocab)->default_value(0), "model vocabulary (0: the data's)")
      ("dim", po::value(&o.model.dim)->default_value(o.model.dim), "model width")
      ("layers", po::value(&o.model.layers)->default_value(o.model.layers), "transformer blocks")
      ("heads", po::value(&o.model.heads)->default_value(o.model.heads), "attention heads")
      ("kv-heads", po::value(&o.model.kv_heads)->default_value(o.model.kv_heads), "key/value heads (GQA)")
      ("hidden", po::value(&o.model.mlp_hidden)->default_value(0), "SwiGLU hidden size (0: 8/3 · dim)")
      ("checkpoint-blocks", po::bool_switch(&o.model.checkpoint_blocks), "recompute each block in backward")
      ("lr", po::value(&o.optim.lr)->default_value(o.optim.lr, "3e-3"), "peak learning rate (AdamW)")
      ("warmup", po::value(&o.optim.warmup)->default_value(o.optim.warmup), "warm-up steps")
      ("min-lr-ratio", po::value(&o.optim.min_lr_ratio)->default_value(o.optim.min_lr_ratio, "0.1"), "cosine floor / lr")
      ("weight-decay", po::value(&o.optim.weight_decay)->default_value(o.optim.weight_decay, "0.1"), "AdamW weight decay")
      ("clip", po::value(&o.optim.clip)->default_value(o.optim.clip), "gradient norm clip (0: none)")
      ("seed", po::value(&o.seed)->default_value(0), "initialisation and data order")
      ("checkpoint", po::value(&r.checkpoint), "checkpoint file (default WORKDIR/checkpoint.lhc)")
      ("save-every", po::value(&r.save_every)->default_value(0), "checkpoint every N steps (0: only at the end and on SIGINT/SIGTERM)")
      ("resume", po::bool_switch(&r.resume), "continue from the checkpoint when it exists")
      ("stop-after", po::value(&r.stop_after)->default_value(0),
       "stop (with a checkpoint, like SIGTERM) after N steps of this run: interruption tests")
      ("eval-docs", po::value(&r.eval_docs)->default_value(r.eval_docs), "task: held-out documents per length for the accuracy table")
      ("eval-every", po::value(&r.eval_every)->default_value(0), "task: an accuracy row per length every N steps (0: only at the end)")
      ("task-pairs", po::value(&r.task.pairs)->default_value(1),
       "task: key-value pairs per document (1: passkey retrieval; more: associative recall, slower to learn)")
      ("task-tokens", po::value(&r.task.tokens)->default_value(0), "task: tokens to generate (0: enough for the steps)")
      ("log-every", po::value(&r.log_every)->default_value(1), "a text line every N steps (--json: every step)")
      ("json", po::bool_switch(&r.json), "one JSON object per step (and per accuracy row) on rank 0")
      ("quiet,q", po::bool_switch(&r.quiet), "no per-step lines and no progress bar");
  add_world_options(desc, init_opts, timeout_s);
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "longhaul train [--data STORE.h5] [--steps N] [--cp P] [--strategy ring] [--sampler dd|concat] ...\n"
             "  mpirun -np 4 longhaul train --cp 2     # 2 CP groups of 2 ranks, data parallel between them"))
    return 0;
  o.cp_options.strategy = strategy_from_string(strategy);
  o.cp_options.layout = layout_from_string(layout);
  o.sampler = train::sampler_from_string(sampler);
  o.curriculum = data::curriculum_from_string(curriculum);
  o.optim.total_steps = r.steps;
  o.model.seed = o.seed;
  init_opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  init_opts.log_config = !r.json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    const bool root = world.rank() == 0;
    data::files::create_directories(r.workdir);
    if (r.checkpoint.empty()) r.checkpoint = data::files::join(r.workdir, "checkpoint.lhc");
    const bool task = r.data.empty();
    std::shared_ptr<data::TokenSource> source;
    if (task) {
      r.task.min_log2 = o.buckets.min_log2;
      r.task.max_log2 = o.buckets.max_log2;
      r.task.seed = 1234 + o.seed;
      if (r.task.tokens == 0) r.task.tokens = std::max<int64_t>(int64_t(1) << 18, r.steps * o.tokens_per_step * 5 / 4);
      r.data = data::files::join(r.workdir, "recall_task.h5");
      if (root) {
        train::write_task_store(r.data, r.task);
        if (!r.json)
          std::cerr << "train: wrote the recall task (" << r.task.tokens << " tokens, documents of 2^"
                    << r.task.min_log2 << "…2^" << r.task.max_log2 << ") to " << r.data << "\n";
      }
      world.comm()->barrier()->wait();
    }
#if LONGHAUL_WITH_HDF5
    source = std::make_shared<data::TokenStoreReader>(r.data);
#else
    throw InvalidArgument("train: reading a token store needs a build with HDF5");
#endif
    o.model.vocab = vocab > 0 ? vocab : source->vocab_size();
    train::Trainer trainer(world.comm(), source, o);
    if (r.resume && data::files::exists(r.checkpoint)) {
      trainer.load(r.checkpoint);
      if (root && !r.json) std::cerr << "train: resumed from " << r.checkpoint << " at step " << trainer.steps_done() << "\n";
    }
    if (root && !r.json)
      std::cerr << "train: " << trainer.model().num_parameters() << " parameters (" << o.model.shape() << "), world "
                << world.size() << " = cp " << o.cp << " x dp " << trainer.mesh().dp_size() << ", "
                << strategy << "/" << layout << ", sampler " << sampler << ", " << o.tokens_per_step
                << " tokens/step\n";
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const bool bar = root && !r.quiet && !r.json && ::isatty(2);
    // Retrieval accuracy by context length (a collective); rank 0 prints a table or JSON rows.
    auto eval = [&](bool final_table) {
      auto rows = trainer.evaluate(r.task.min_log2, r.task.max_log2, r.eval_docs, r.task.pairs, r.task.seed);
      if (!root) return;
      std::vector<bench::Row> out;
      for (const auto& e : rows)
        out.push_back(bench::Row()
                          .add("eval", std::string("recall"))
                          .add("step", trainer.steps_done())
                          .add("context", e.context)
                          .add("accuracy", e.accuracy())
                          .add("correct", e.correct)
                          .add("total", e.total));
      if (r.json) {
        bench::print_json(std::cout, out);
      } else if (final_table) {
        std::cout << "# retrieval accuracy by context length after " << trainer.steps_done()
                  << " steps (chance: 1/16)\n";
        bench::print_table(std::cout, out);
      } else {
        std::printf("eval  step %5lld  accuracy", static_cast<long long>(trainer.steps_done()));
        for (const auto& e : rows) std::printf("  %lld: %.3f", static_cast<long long>(e.context), e.accuracy());
        std::printf("\n");
      }
      std::fflush(stdout);
    };
    double tokens = 0, seconds = 0;
    int stop = 0;
    const int64_t first = trainer.steps_done();
    while (trainer.steps_done() < r.steps) {
      train::StepStats s = trainer.step();
      tokens += double(s.tokens);
      seconds += s.seconds;
      if (root && !r.quiet && (r.json || s.step % r.log_every == 0)) log_step(s, r.json);
      if (bar) progress(s, r.steps);
      if (task && r.eval_docs > 0 && r.eval_every > 0 && s.step % r.eval_every == 0 && s.step < r.steps) {
        if (bar) std::fprintf(stderr, "\n");
        eval(false);
      }
      // Every rank must agree to stop (a signal may reach only some): one tiny all-reduce.
      at::Tensor flag = at::full({1}, double(g_signal.load()), at::kDouble);
      world.comm()->all_reduce(flag, ReduceOp::Max)->wait();
      stop = static_cast<int>(flag.item<double>());
      const bool stop_after = r.stop_after > 0 && trainer.steps_done() - first >= r.stop_after;
      if (stop || stop_after || (r.save_every > 0 && s.step % r.save_every == 0)) trainer.save(r.checkpoint);
      if (stop_after) {
        if (root && !r.json) std::cerr << "train: stopped after " << r.stop_after << " steps; checkpoint " << r.checkpoint << "\n";
        return 0;
      }
      if (stop) break;
    }
    if (bar) std::fprintf(stderr, "\n");
    if (stop) {
      if (root) std::cerr << "train: signal " << stop << ": checkpoint at step " << trainer.steps_done() << " in "
                          << r.checkpoint << "\n";
      return 128 + stop;
    }
    trainer.save(r.checkpoint);
    if (root && !r.json)
      std::cerr << "train: " << trainer.steps_done() << " steps, mean " << (seconds > 0 ? tokens / seconds : 0)
                << " tokens/s; checkpoint " << r.checkpoint << "\n";
    if (task && r.eval_docs > 0) eval(true);
    return 0;
  });
}

}  // namespace longhaul::cli
