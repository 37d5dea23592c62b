// LH_CHECK_NCCL / LH_CHECK_CUDA: turn an NCCL or CUDA runtime error code into a CommError with the
// library's own text, the call and file:line. Only for .cpp files of this folder (includes nccl.h).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "runtime/errors.h"

namespace longhaul::nccl {
// NCCL's name of the error plus its last detailed message on `comm` (may be null).
inline std::string error_text(ncclResult_t rc, ncclComm_t comm = nullptr) {
  std::string s = ncclGetErrorString(rc);
  const char* last = ncclGetLastError(comm);
  if (last && *last) s += std::string(" (") + last + ")";
  return s;
}
}  // namespace longhaul::nccl

#define LH_CHECK_NCCL(call)                                                                        \
  do {                                                                                             \
    ncclResult_t lh_nccl_rc_ = (call);                                                             \
    if (lh_nccl_rc_ != ncclSuccess && lh_nccl_rc_ != ncclInProgress) {                             \
      throw ::longhaul::CommError(::longhaul::detail::str_cat("NCCL call ", #call, " failed: ",    \
                                                              ::longhaul::nccl::error_text(lh_nccl_rc_), \
                                                              " (", __FILE__, ":", __LINE__, ")")); \
    }                                                                                              \
  } while (0)

#define LH_CHECK_CUDA(call)                                                                        \
  do {                                                                                             \
    cudaError_t lh_cuda_rc_ = (call);                                                              \
    if (lh_cuda_rc_ != cudaSuccess) {                                                              \
      (void)cudaGetLastError(); /* clear a non-sticky error */                                     \
      throw ::longhaul::CommError(::longhaul::detail::str_cat("CUDA call ", #call, " failed: ",    \
                                                              cudaGetErrorString(lh_cuda_rc_), " (", \
                                                              __FILE__, ":", __LINE__, ")"));      \
    }                                                                                              \
  } while (0)
