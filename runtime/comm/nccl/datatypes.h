// Mapping of ATen dtypes and longhaul reduce operations to NCCL's. Data that is only moved travels
// as bytes (ncclUint8), so every dtype can be sent; reductions need one of NCCL's arithmetic types.
#pragma once

#include <c10/core/ScalarType.h>
#include <nccl.h>

#include <string>

#include "runtime/comm/comm.h"

namespace longhaul::nccl {

// Throws Unsupported naming `what` for a dtype NCCL cannot reduce (bool, complex, float8...).
ncclDataType_t element_type(at::ScalarType type, const std::string& what);
ncclRedOp_t reduce_op(ReduceOp op);

}  // namespace longhaul::nccl
