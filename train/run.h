// A whole training run, as `longhaul train` (and any other front end) runs it: the token store
// (the embedded recall task when none is given), checkpoint and resume, a stop that every rank
// agrees on (SIGINT/SIGTERM reaching any rank, or a step budget), the evaluation cadence and the
// final checkpoint. What to print is the observer's business; the run itself prints nothing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/hdf5/store_verify.h"
#include "runtime/comm/comm.h"
#include "train/task.h"
#include "train/trainer.h"

namespace longhaul::train {

struct RunOptions {
  std::string data;                     // token store (`longhaul prep`); empty: the embedded recall task
  // Read the store in a child process first (store_verify.h): once per file by default
  // (--verify-data: every run, --no-verify-data: never).
  data::StoreVerify verify_data = data::StoreVerify::Once;
  std::string workdir = "longhaul-train";  // the task's store and the checkpoint go here
  std::string checkpoint;               // default WORKDIR/checkpoint.lhc
  int64_t steps = 200;                  // optimiser steps in total, counting a resumed run's
  int64_t save_every = 0;               // checkpoint every N steps (0: at the end and on a stop)
  int64_t stop_after = 0;               // stop with a checkpoint after N steps of this run (tests)
  bool resume = false;                  // continue from the checkpoint when it exists
  int64_t vocab = 0;                    // model vocabulary (0: the store's)
  int eval_docs = 32;                   // task: held-out documents per length (0: no evaluation)
  int64_t eval_every = 0;               // task: evaluate every N steps (0: only at the end)
  TaskOptions task;                     // task: pairs and tokens (lengths and seed follow the run's)
  // A held-out token store (`longhaul prep`; read as `data` is, verify_data included): its
  // validation loss per length (Trainer::validation_loss) every eval_every steps and at the end,
  // on the first eval_tokens tokens of each bucket (at least one sequence).
  std::string eval_data;
  int64_t eval_tokens = 65536;
  bool handle_signals = true;           // SIGINT/SIGTERM: checkpoint and stop on every rank
  // Before the first step (of a fresh or a resumed run): the heaviest steps, twice each, so one that
  // does not fit fails at once, named (train/preflight.h).
  bool preflight = true;
  // On the CPU, each step (with its evaluation and checkpoint) under each process's share of what
  // its host may give then (train/host_share.h): past it a step fails named, exit 7, where the OOM
  // killer would end it. Thread-ranks (one process) and CUDA runs have no ceiling.
  bool host_ceiling = true;
};

// Called on every rank; `root` tells rank 0 (which prints, in the tool).
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  virtual void note(const std::string& /*text*/) {}  // progress notes, rank 0 only
  virtual void started(Trainer& /*trainer*/) {}
  virtual void memory_checked(const std::vector<PreflightResult>& /*results*/) {}  // every rank, after the preflight
  virtual void step(const StepStats& /*stats*/) {}
  // Accuracy by context length after `step` steps; `final`: the run's last evaluation.
  virtual void evaluated(int64_t /*step*/, const std::vector<EvalRow>& /*rows*/, bool /*final*/) {}
  // Validation loss by length on RunOptions::eval_data after `step` steps (every rank).
  virtual void validated(int64_t /*step*/, const std::vector<LossRow>& /*rows*/, bool /*final*/) {}
};

struct RunResult {
  int64_t steps_done = 0;
  // Tokens per second over this run's steps after its first (a warm-up: allocations, kernel
  // selection, CUDA context); the first alone when it is the only one.
  double tokens_per_s = 0;
  int signal = 0;           // the signal that stopped the run (0: none)
  bool stopped_after = false;
  std::string checkpoint;
};

// Collective over `world`: every rank calls it with the same options.
RunResult run_training(const CommPtr& world, TrainOptions options, RunOptions run, RunObserver& observer);

}  // namespace longhaul::train
