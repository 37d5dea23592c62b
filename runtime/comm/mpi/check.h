// LH_CHECK_MPI: turns an MPI error code into a CommError with MPI's own text, the call and file:line.
// Communicators use MPI_ERRORS_RETURN, so errors come back here instead of aborting the job.
#pragma once

#include <mpi.h>

#include <string>

#include "core/errors.h"

namespace longhaul::mpi {
inline std::string error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}
}  // namespace longhaul::mpi

#define LH_CHECK_MPI(call)                                                                        \
  do {                                                                                            \
    int lh_mpi_rc_ = (call);                                                                      \
    if (lh_mpi_rc_ != MPI_SUCCESS) {                                                              \
      throw ::longhaul::CommError(::longhaul::detail::str_cat(                                    \
          "MPI call ", #call, " failed: ", ::longhaul::mpi::error_string(lh_mpi_rc_), " (", __FILE__, \
          ":", __LINE__, ")"));                                                                   \
    }                                                                                             \
  } while (0)
