// LH_CHECK_NCCL: an NCCL error code becomes a CommError with NCCL's own text, the call and
// file:line (LH_CHECK_CUDA comes from core/cuda_check.h). Only for .cpp files of this folder (includes nccl.h).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "core/cuda_check.h"
#include "core/errors.h"

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


