#include "runtime/comm/nccl/bootstrap.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstring>

#include "longhaul/config.h"
#include "runtime/comm/nccl/check.h"
#include "runtime/comm/nccl/communicator.h"
#include "core/errors.h"
#if LONGHAUL_WITH_MPI
#include "runtime/comm/mpi/communicator.h"
#endif

namespace longhaul {
namespace nccl {

int resolve_device(int requested) {
  const int count = at::hasCUDA() ? static_cast<int>(c10::cuda::device_count()) : 0;
  if (count == 0) throw Unsupported("backend nccl: no CUDA device is visible to this process");
  const int device = requested < 0 ? static_cast<int>(c10::cuda::current_device()) : requested;
  if (device >= count)
    throw InvalidArgument(detail::str_cat("backend nccl: device ", device, " requested but only ", count,
                                          " CUDA devices are visible"));
  return device;
}

namespace {

CommPtr join(const ncclUniqueId& id, int rank, int size, const NcclOptions& options, Clock::time_point deadline,
             const std::string& how, std::shared_ptr<void> keep_alive = nullptr) {
  const int device = resolve_device(options.device);
  auto handle = init_handle(id, rank, size, device, options.nonblocking, deadline,
                            detail::str_cat("backend nccl: joining the world (rank ", rank, " of ", size, ", cuda:",
                                            device, ", unique id by ", how, ")"));
  handle->keep_alive = std::move(keep_alive);
  return make_communicator(handle, rank, size, options.comm);
}

ncclUniqueId new_unique_id() {
  ncclUniqueId id;
  LH_CHECK_NCCL(ncclGetUniqueId(&id));
  return id;
}

}  // namespace
}  // namespace nccl

CommPtr create_nccl_world(NcclOptions options) {
  return nccl::join(nccl::new_unique_id(), 0, 1, options, Clock::now() + options.comm.timeout, "nothing (one rank)");
}

CommPtr create_nccl_world(Communicator& bootstrap, NcclOptions options) {
  const auto deadline = Clock::now() + options.comm.timeout;
  // [status byte][unique id]: a rank 0 that cannot make an id tells the others instead of leaving
  // them to their deadline.
  at::Tensor buf = at::zeros({1 + static_cast<int64_t>(sizeof(ncclUniqueId))}, at::kByte);
  std::string error;
  if (bootstrap.rank() == 0) {
    try {
      ncclUniqueId id = nccl::new_unique_id();
      std::memcpy(buf.data_ptr<uint8_t>() + 1, &id, sizeof(id));
      buf.data_ptr<uint8_t>()[0] = 1;
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  bootstrap.broadcast(buf, 0)->wait();
  if (!error.empty()) throw CommError(error);
  if (buf.data_ptr<uint8_t>()[0] != 1)
    throw CommError(detail::str_cat("backend nccl: rank 0 of the ", bootstrap.backend(),
                                    " bootstrap communicator could not create an NCCL unique id (see its log)"));
  ncclUniqueId id;
  std::memcpy(&id, buf.data_ptr<uint8_t>() + 1, sizeof(id));
  return nccl::join(id, bootstrap.rank(), bootstrap.size(), options, deadline,
                    detail::str_cat("broadcast over the ", bootstrap.backend(), " communicator"));
}

CommPtr create_nccl_world_mpi(NcclOptions options) {
#if LONGHAUL_WITH_MPI
  CommPtr world = create_mpi_world(options.comm);
  return create_nccl_world(*world, options);
#else
  (void)options;
  throw Unsupported("backend nccl: this build of longhaul has no MPI to broadcast the NCCL unique id; "
                    "use create_nccl_world_tcp (a c10d::TCPStore)");
#endif
}

CommPtr create_nccl_world_tcp(const std::string& host, int port, int rank, int size, NcclOptions options) {
  const std::string where = detail::str_cat("backend nccl: bootstrap through the TCPStore at ", host, ":", port,
                                            " (rank ", rank, " of ", size, ")");
  LH_CHECK(size >= 1 && rank >= 0 && rank < size, where, ": rank must be in [0, size)");
  LH_CHECK(port > 0 && port < 65536, where, ": port outside (0, 65536)");
  const auto deadline = Clock::now() + options.comm.timeout;
  const std::string key = "longhaul/nccl/unique_id";
  c10::intrusive_ptr<c10d::TCPStore> store;
  ncclUniqueId id;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = static_cast<std::size_t>(size);
    o.waitWorkers = true;  // rank 0 returns only when all `size` ranks connected (or the timeout)
    o.timeout = options.comm.timeout;
    store = c10::make_intrusive<c10d::TCPStore>(host, o);
    if (rank == 0) {
      id = nccl::new_unique_id();
      const auto* p = reinterpret_cast<const uint8_t*>(&id);
      store->set(key, std::vector<uint8_t>(p, p + sizeof(id)));
    } else {
      const std::vector<uint8_t> v = store->get(key);  // waits for rank 0, up to the store's timeout
      if (v.size() != sizeof(id))
        throw CommError(detail::str_cat(where, ": the store holds ", v.size(), " bytes under '", key, "', expected ",
                                        sizeof(id), " (another job on this port?)"));
      std::memcpy(&id, v.data(), sizeof(id));
    }
  } catch (const CommError&) {
    throw;
  } catch (const c10::Error& e) {
    throw CommError(detail::str_cat(where, " failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw CommError(detail::str_cat(where, " failed: ", e.what()));
  }
  // The store (rank 0 serves it) lives as long as the communicator, so no rank loses it mid-join.
  return nccl::join(id, rank, size, options, deadline, "TCPStore",
                    std::make_shared<c10::intrusive_ptr<c10d::TCPStore>>(store));
}

}  // namespace longhaul
