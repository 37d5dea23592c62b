// `longhaul train`'s loop over MPI: every split of the world into CP × data parallel (np 2:
// cp 2, dp 2; np 4: cp 4, cp 2 × dp 2, dp 4) trains like one process on the same batches, and
// per-bucket degrees (--cp auto) like fixed ones. The single-process reference runs on each rank
// in a one-rank local world.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <set>

#include "runtime/comm/local/communicator.h"
#include "tests/common/train_runs.h"
#include "tests/multiprocess/mpi_fixture.h"
#include "train/host_share.h"
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

TrainRun train_on(CommPtr world, const train::TrainOptions& o, int steps) {
  TrainRun r;
  train::Trainer t(std::move(world), train::task_source(testing::tiny_recall_task()), o);
  for (int i = 0; i < steps; ++i) {
    const train::StepStats s = t.step();
    r.losses.push_back(s.loss);
    r.degrees.push_back(s.cp_degree);
  }
  r.params = testing::parameter_copies(t);
  return r;
}
TrainRun train_on(CommPtr world, int cp, int steps) { return train_on(std::move(world), options(cp), steps); }

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

// --cp auto (64·W tokens per step over buckets 64 and 128: the planner runs 64 on one rank and 128
// on two, from fixed rates) equals fixed --cp W and --cp 1 on the same batches, for ring,
// tokenring and ulysses inside the groups.
TEST_F(TrainMpi, AutoDegreesEqualFixedCpWAndCp1) {
  const int w = comm().size(), steps = 6;
  for (Strategy s : {Strategy::Ring, Strategy::TokenRing, Strategy::Ulysses}) {
    train::TrainOptions a = options(train::TrainOptions::kCpAuto);
    a.cp_options.strategy = s;
    a.buckets = {6, 7};
    a.tokens_per_step = 64 * w;
    a.kernel_gflops = 30;
    a.dense_gflops = 60;
    const TrainRun automatic = train_on(comm().shared_from_this(), a, steps);
    EXPECT_EQ(std::set<int>(automatic.degrees.begin(), automatic.degrees.end()), (std::set<int>{1, 2}))
        << to_string(s) << ": the steps should run on 1 and on 2 ranks";
    for (int fixed : {w, 1}) {
      train::TrainOptions f = a;
      f.cp = fixed;
      testing::expect_same_run(train_on(comm().shared_from_this(), f, steps), automatic,
                               std::string(to_string(s)) + " auto vs fixed cp " + std::to_string(fixed));
    }
  }
}

// The preflight's ceiling: the world's processes, all on this host in one memory cgroup, share
// what it may still give, each its 1/W; thread-ranks in one process (a local world) get none.
TEST_F(TrainMpi, EachProcessOfTheHostGetsItsShareOfItsMemory) {
  const train::HostShare share = train::host_share(comm());
  EXPECT_TRUE(share.limited) << share.why_not;
  EXPECT_EQ(share.processes, comm().size());
  EXPECT_NEAR(share.bytes * comm().size(), share.available_bytes, 1.0);
  EXPECT_NE(describe(share).find(" over " + std::to_string(comm().size()) + " processes on this host"), std::string::npos)
      << describe(share);
}

}  // namespace
}  // namespace longhaul
