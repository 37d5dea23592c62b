// `longhaul train`'s loop over MPI: every split of the world into CP × data parallel (np 2:
// cp 2, dp 2; np 4: cp 4, cp 2 × dp 2, dp 4) trains like one process on the same batches. The
// single-process reference runs on each rank in a one-rank local world.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "runtime/comm/local/communicator.h"
#include "tests/common/train_runs.h"
#include "tests/multiprocess/mpi_fixture.h"
#include "train/task.h"
#include "train/trainer.h"

namespace longhaul {
namespace {

train::TrainOptions options(int cp) {
  train::TrainOptions o;
  o.model.vocab = train::TaskVocab::size;
  o.model.dim = 32;
  o.model.heads = 4;
  o.model.kv_heads = 2;
  o.model.seed = 5;
  o.optim.lr = 1e-3;
  o.optim.total_steps = 6;
  o.cp = cp;
  o.buckets = {5, 7};
  o.tokens_per_step = 512;
  return o;
}

using testing::TrainRun;

TrainRun train_on(CommPtr world, int cp, int steps) {
  TrainRun r;
  train::Trainer t(std::move(world), train::task_source(testing::tiny_recall_task()), options(cp));
  for (int i = 0; i < steps; ++i) r.losses.push_back(t.step().loss);
  r.params = testing::parameter_copies(t);
  return r;
}

class TrainMpi : public MpiTest {};

TEST_F(TrainMpi, EverySplitEqualsOneProcess) {
  const int steps = 3;
  TrainRun ref;
  local::run_ranks(1, [&](Communicator& c) { ref = train_on(c.shared_from_this(), 1, steps); });
  const int w = comm().size();
  for (int cp = 1; cp <= w; ++cp) {
    if (w % cp) continue;
    testing::expect_same_run(ref, train_on(comm().shared_from_this(), cp, steps), "cp " + std::to_string(cp));
  }
}

}  // namespace
}  // namespace longhaul
