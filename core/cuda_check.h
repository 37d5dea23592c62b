// LH_CHECK_CUDA: a CUDA runtime error code becomes an Error with CUDA's text, the call and
// file:line (a non-sticky error is cleared first). For .cpp/.cu files built with the CUDA toolkit.
#pragma once

#include <cuda_runtime_api.h>

#include "core/errors.h"

#define LH_CHECK_CUDA(call)                                                                        \
  do {                                                                                             \
    cudaError_t lh_cuda_rc_ = (call);                                                              \
    if (lh_cuda_rc_ != cudaSuccess) {                                                              \
      (void)cudaGetLastError(); /* clear a non-sticky error */                                     \
      throw ::longhaul::Error(::longhaul::detail::str_cat("CUDA call ", #call, " failed: ",        \
                                                          cudaGetErrorString(lh_cuda_rc_), " (", __FILE__, \
                                                          ":", __LINE__, ")"));                    \
    }                                                                                              \
  } while (0)
