#include "tests/common/rank_outcomes.h"

#include <mutex>

#include "core/errors.h"
#include "runtime/comm/local/communicator.h"

namespace longhaul::testing {

RankOutcomes run_collecting(int ranks, const CommOptions& options, const std::function<void(Communicator&)>& body) {
  RankOutcomes out{std::vector<std::string>(ranks), std::vector<bool>(ranks, false), std::vector<double>(ranks, 0.0)};
  std::mutex mu;
  local::run_ranks(ranks, [&](Communicator& comm) {
    const auto start = Clock::now();
    std::string error;
    bool timeout = false;
    try {
      body(comm);
    } catch (const TimeoutError& e) {
      error = e.what();
      timeout = true;
    } catch (const Error& e) {
      error = e.what();
    }
    std::lock_guard<std::mutex> lock(mu);
    out.error[comm.rank()] = error;
    out.timeout[comm.rank()] = timeout;
    out.seconds[comm.rank()] = std::chrono::duration<double>(Clock::now() - start).count();
  }, options);
  return out;
}

}  // namespace longhaul::testing
