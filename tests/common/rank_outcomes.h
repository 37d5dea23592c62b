// What each thread-rank of a local run threw: for tests whose ranks are expected to fail, and
// that check every rank's message, whether it was a deadline, and how long it took.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul::testing {

struct RankOutcomes {
  std::vector<std::string> error;  // empty: the rank threw nothing
  std::vector<bool> timeout;       // the error was a TimeoutError
  std::vector<double> seconds;     // how long the rank's body ran
};

// Runs body on `ranks` thread-ranks of a local world with `options`, catching each rank's
// longhaul::Error (TimeoutError noted as such).
RankOutcomes run_collecting(int ranks, const CommOptions& options, const std::function<void(Communicator&)>& body);

}  // namespace longhaul::testing
