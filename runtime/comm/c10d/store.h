// Internal: the bootstrap of a c10d world — the TCPStore every rank meets at (rank 0 serves it),
// and a join step in which each rank announces itself and checks the others, so an unreachable
// store, a rank that never arrives, disagreeing world sizes or a duplicate rank end in one clear
// CommError within the deadline instead of a hang inside the process group's rendezvous.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

namespace longhaul::c10d_backend {

// `serve`: listen on host:port (port 0: any free port, see the store's getPort()); otherwise
// connect, retrying until the timeout.
c10::intrusive_ptr<c10d::Store> connect_tcp_store(const std::string& host, int port, int rank, int size,
                                                  std::chrono::milliseconds timeout, bool serve);

// Every rank of [0, size) must call this with the same size within `timeout` (keys under
// "longhaul/join/"). Throws CommError naming the missing ranks or the disagreement.
void join(c10d::Store& store, int rank, int size, std::chrono::milliseconds timeout, const std::string& what);

}  // namespace longhaul::c10d_backend
