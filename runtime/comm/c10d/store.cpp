#include "runtime/comm/c10d/store.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "runtime/comm/work.h"
#include "core/errors.h"

namespace longhaul::c10d_backend {
namespace {

std::string seconds(std::chrono::milliseconds t) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << t.count() / 1e3 << " s";
  return os.str();
}

std::string message_of(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

std::string text(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string rank_key(int r) { return "longhaul/join/rank" + std::to_string(r); }

}  // namespace

c10::intrusive_ptr<c10d::Store> connect_tcp_store(const std::string& host, int port, int rank, int size,
                                                  std::chrono::milliseconds timeout, bool serve) {
  const std::string where = detail::str_cat("backend c10d: the TCPStore at ", host, ":", port, " (rank ", rank,
                                            " of ", size, serve ? ", serving it" : ", connecting to it", ")");
  if (size < 1 || rank < 0 || rank >= size)
    throw InvalidArgument(detail::str_cat(where, ": rank must be in [0, world size)"));
  if (port < 0 || port > 65535 || (port == 0 && !serve))
    throw InvalidArgument(detail::str_cat(where, ": port must be in (0, 65536) (0 only to serve: any free port)"));
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = serve;
  o.numWorkers = std::nullopt;
  o.waitWorkers = false;  // join() checks arrivals with a clear message
  // TCPStore retries a failed connection until its timeout has passed, and the last try may take a
  // whole timeout itself: half of ours for connecting keeps the total near the deadline. Store
  // operations then get the whole timeout.
  o.timeout = serve ? timeout : std::max(timeout / 2, std::chrono::milliseconds(1));
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(host, o);
    store->setTimeout(timeout);
    return store;
  } catch (const std::exception& e) {
    throw CommError(detail::str_cat(where, ": ", serve ? "could not listen" : "could not connect", " within ",
                                    seconds(timeout), " (", message_of(e), "); check MASTER_ADDR/MASTER_PORT",
                                    serve ? " (is the port in use?)" : " and that the store's host is up"));
  }
}

void join(c10d::Store& store, int rank, int size, std::chrono::milliseconds timeout, const std::string& what) {
  const auto start = Clock::now();
  try {
    // A second process with the same rank is caught by its own counter.
    const int64_t copies = store.add(rank_key(rank) + "/copies", 1);
    if (copies > 1)
      throw CommError(detail::str_cat(what, ": rank ", rank, " joined ", copies,
                                      " times: two processes were given the same rank"));
    store.set(rank_key(rank), bytes(std::to_string(size)));
    std::vector<std::string> keys;
    for (int j = 0; j < size; ++j) keys.push_back(rank_key(j));
    bool all_here = true;
    try {
      store.wait(keys, timeout);
    } catch (const std::exception&) {
      all_here = false;
    }
    std::vector<int> missing;
    std::string disagree;
    for (int j = 0; j < size; ++j) {
      if (!all_here && !store.check({keys[j]})) {
        missing.push_back(j);
        continue;
      }
      const std::string theirs = text(store.get(keys[j]));
      if (theirs != std::to_string(size) && disagree.empty())
        disagree = detail::str_cat("rank ", j, " was started with world size ", theirs, ", this rank with ", size);
    }
    // A rank beyond this rank's world size means the sizes disagree too.
    if (disagree.empty() && store.check({rank_key(size)}))
      disagree = detail::str_cat("rank ", size, " joined, but this rank was started with world size ", size);
    if (!disagree.empty())
      throw CommError(detail::str_cat(what, ": the ranks disagree on the world size: ", disagree,
                                      " (check WORLD_SIZE / SLURM_NTASKS / --nproc-per-node)"));
    if (!missing.empty()) {
      std::ostringstream ranks;
      for (size_t i = 0; i < missing.size() && i < 16; ++i) ranks << (i ? ", " : "") << missing[i];
      if (missing.size() > 16) ranks << ", ...";
      throw CommError(detail::str_cat(
          what, ": ", missing.size(), " of ", size, " ranks never arrived within ", seconds(timeout), " (elapsed ",
          seconds(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start)), "): rank",
          missing.size() > 1 ? "s " : " ", ranks.str(),
          "; check the world size and that every rank started and reaches the same store"));
    }
  } catch (const CommError&) {
    throw;
  } catch (const std::exception& e) {
    throw CommError(detail::str_cat(what, ": the store failed while the ranks joined: ", message_of(e)));
  }
}

}  // namespace longhaul::c10d_backend
