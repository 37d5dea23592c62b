#include "runtime/comm/c10d/gloo.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>

#include "core/errors.h"

namespace longhaul::c10d_backend {

c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                            std::chrono::milliseconds timeout, const std::string& what) {
  try {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // GLOO_SOCKET_IFNAME picks the interface as in torch.distributed; otherwise the host's
    // address, falling back to the loopback when the hostname does not resolve.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 2;
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
  } catch (const c10::Error& e) {
    throw CommError(detail::str_cat(what, ": creating the Gloo process group failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw CommError(detail::str_cat(what, ": creating the Gloo process group failed: ", e.what()));
  }
}

}  // namespace longhaul::c10d_backend
