#include "runtime/comm/nccl/bootstrap.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>

#include <cstdio>
#include <cstring>

#include "core/errors.h"
#include "runtime/comm/nccl/check.h"
#include "runtime/comm/nccl/communicator.h"

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

CommPtr join(const ncclUniqueId& id, int rank, int size, const nccl::Options& options, Clock::time_point deadline,
             const std::string& how) {
  const int device = resolve_device(options.device);
  auto handle = init_handle(id, rank, size, device, options.nonblocking, deadline,
                            detail::str_cat("backend nccl: joining the world (rank ", rank, " of ", size, ", cuda:",
                                            device, ", unique id by ", how, ")"));
  return make_communicator(handle, rank, size, options.comm);
}

ncclUniqueId new_unique_id() {
  ncclUniqueId id;
  LH_CHECK_NCCL(ncclGetUniqueId(&id));
  return id;
}

}  // namespace

std::string gpu_uuid(int device) {
  cudaDeviceProp prop{};
  LH_CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
  const auto* b = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
  // Bytes 0-3, 4-5, 6-7, 8-9, 10-15, as nvidia-smi groups them.
  char text[48];
  std::snprintf(text, sizeof(text), "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return text;
}

}  // namespace nccl

CommPtr nccl::create_world(nccl::Options options) {
  return nccl::join(nccl::new_unique_id(), 0, 1, options, Clock::now() + options.comm.timeout, "nothing (one rank)");
}

CommPtr nccl::create_world(Communicator& bootstrap, nccl::Options options) {
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

}  // namespace longhaul
