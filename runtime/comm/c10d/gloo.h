// Internal: a torch ProcessGroupGloo over a c10d store, handed on as a plain c10d::Backend (the
// only file that includes ProcessGroupGloo.hpp; see gloo_decls/README.md).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

namespace longhaul::c10d_backend {

// Connects `size` ranks through `store` (a full mesh of TCP pairs over the loopback or the
// host's address); `timeout` bounds the rendezvous and every Gloo operation. Throws CommError.
c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                            std::chrono::milliseconds timeout, const std::string& what);

}  // namespace longhaul::c10d_backend
