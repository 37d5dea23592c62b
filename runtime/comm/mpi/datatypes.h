// Mapping of ATen dtypes and reduce ops to MPI ones; bfloat16 and float16, which MPI lacks, get
// their own datatypes and reduction functions (accumulated in float32 per element pair).
#pragma once

#include <mpi.h>

#include <c10/core/ScalarType.h>

#include "runtime/comm/comm.h"

namespace longhaul::mpi {
MPI_Datatype element_type(c10::ScalarType type);  // throws Unsupported for e.g. complex
MPI_Op reduce_op(ReduceOp op, c10::ScalarType type);
// A committed contiguous datatype of `bytes` bytes (cached; rows of a collective).
MPI_Datatype row_type(int64_t bytes);
}  // namespace longhaul::mpi
