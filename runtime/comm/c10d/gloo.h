// Internal: a torch ProcessGroupGloo over a c10d store, handed on as a plain c10d::Backend (the
// only file that includes ProcessGroupGloo.hpp; see gloo_decls/README.md).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

namespace longhaul::c10d_backend {

// Connects `size` ranks through `store` (a full mesh of TCP pairs); `timeout` bounds the
// rendezvous and every Gloo operation. Throws CommError. Where Gloo listens (and what it tells the
// others to connect to): GLOO_SOCKET_IFNAME's interface when set, as in torch.distributed; else
// `bind_address` when given (create_world_tcp passes the local address on the route to the store's
// host, so ranks meet on the network their launcher named); else the host name's address, or the
// loopback when the host name does not resolve (one host only).
c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                            std::chrono::milliseconds timeout, const std::string& what,
                                            const std::string& bind_address = {});

// The local address this host uses to reach `host` (the kernel's route; nothing is sent), e.g.
// "10.0.0.5"; empty when `host` does not resolve or no route leads there.
std::string local_address_toward(const std::string& host);

}  // namespace longhaul::c10d_backend
