// The fixture of the MPI suites: the world communicator (created in mpi_main.cpp) and a
// TearDown that all-reduces the pass flag, so one failing rank fails the test on every rank and
// later tests stay in step.
#pragma once

#include <gtest/gtest.h>

#include "runtime/comm/comm.h"
#include "tests/common/collectives.h"

namespace longhaul {

extern CommPtr g_mpi_world;

class MpiTest : public ::testing::Test {
 protected:
  Communicator& comm() { return *g_mpi_world; }
  void TearDown() override {
    const bool mine = !HasFailure();
    if (!testing::all_ranks_pass(*g_mpi_world, mine) && mine) ADD_FAILURE() << "another rank failed this test";
  }
};

}  // namespace longhaul
