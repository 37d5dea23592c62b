// The World's lifetime under mpirun: a second init() while the first World lives, and that second
// World's destruction, leave MPI running for the first; once the last World is gone, MPI is over
// for the process (it starts once), and a communicator kept past it, or another init(), is a clear
// error, not an abort of the job. Exit 0 when every check holds; each failure is printed.
#include <ATen/ATen.h>

#include <cstdio>
#include <string>

#include "core/errors.h"
#include "launch/world.h"
#include "runtime/comm/mpi/engine.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

double sum_over_ranks(longhaul::Communicator& comm) {
  at::Tensor t = at::ones({4});
  comm.all_reduce(t)->wait();
  return t[0].item<double>();
}

// Runs fn, which must throw an Error whose message holds `says`.
template <typename F>
void expect_error(F fn, const std::string& says, const std::string& what) {
  try {
    fn();
    check(false, what + ": no error");
  } catch (const longhaul::Error& e) {
    check(std::string(e.what()).find(says) != std::string::npos, what + ": the message is: " + e.what());
  }
}

}  // namespace

int main() {
  longhaul::InitOptions options;
  options.timeout = std::chrono::seconds(20);
  options.log_config = false;
  longhaul::CommPtr kept;
  int size = 0;
  {
    longhaul::World first = longhaul::init(options);
    size = first.size();
    {
      longhaul::World second = longhaul::init(options);
      check(sum_over_ranks(*second.comm()) == size, "the second World's all_reduce");
    }
    check(sum_over_ranks(*first.comm()) == size, "the first World after the second was destroyed");
    longhaul::World moved = std::move(first);
    check(sum_over_ranks(*moved.comm()) == size, "a moved World");
    kept = moved.comm();
  }
  // Every World is gone: MPI was finalised.
  expect_error([&] { sum_over_ranks(*kept); }, "MPI was already finalised", "a communicator kept past its World");
  expect_error([&] { longhaul::init(options); }, "MPI was already finalised", "init() after the last World");
  // Neither started an engine thread that no one would join: the engine made after MPI_Finalize
  // only fails what it is given.
  check(!longhaul::mpi::Engine::running(), "an MPI engine thread runs after MPI was finalised");
  if (failures == 0) std::fprintf(stderr, "mpi_world_lifetime: every check held\n");
  return failures == 0 ? 0 : 1;
}
