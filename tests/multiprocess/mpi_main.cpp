// main() of the multi-rank test binary: the world communicator longhaul::init builds (mpi under
// mpirun, c10d/Gloo under torchrun or Slurm), with a short deadline; rank 0 prints progress and
// the other ranks only their failures; one exit code for all ranks.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "launch/world.h"
#include "tests/multiprocess/mpi_fixture.h"

namespace longhaul {

CommPtr g_mpi_world;

namespace {
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }

 private:
  int rank_;
};
}  // namespace
}  // namespace longhaul

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  longhaul::InitOptions options;
  options.timeout = std::chrono::seconds(20);
  auto world = std::make_unique<longhaul::World>(longhaul::init(options));
  longhaul::g_mpi_world = world->comm();
  if (longhaul::g_mpi_world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new longhaul::FailurePrinter(longhaul::g_mpi_world->rank()));
  }
  int rc = RUN_ALL_TESTS();
  rc = longhaul::testing::all_ranks_pass(*longhaul::g_mpi_world, rc == 0) ? 0 : 1;
  longhaul::g_mpi_world.reset();
  world.reset();  // finalises MPI when init started it
  return rc;
}
