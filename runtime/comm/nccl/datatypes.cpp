#include "runtime/comm/nccl/datatypes.h"

#include "core/errors.h"

namespace longhaul::nccl {

ncclDataType_t element_type(at::ScalarType type, const std::string& what) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kChar: return ncclInt8;
    case at::kByte: return ncclUint8;
    default:
      throw Unsupported(detail::str_cat(what, ": NCCL cannot reduce tensors of dtype ", type,
                                        " (float32/64, float16, bfloat16, int8/32/64, uint8 are supported)"));
  }
}

ncclRedOp_t reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

}  // namespace longhaul::nccl
