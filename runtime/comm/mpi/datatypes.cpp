#include "runtime/comm/mpi/datatypes.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <map>

#include "runtime/comm/mpi/check.h"

// Everything here runs on the engine thread (the only one calling MPI), so the caches need no lock.
namespace longhaul::mpi {
namespace {

template <typename T, typename F>
void apply(void* in, void* inout, int* len, F f) {
  auto* a = static_cast<T*>(in);
  auto* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = T(f(static_cast<float>(a[i]), static_cast<float>(b[i])));
}
template <typename T>
void max_fn(void* in, void* inout, int* len, MPI_Datatype*) { apply<T>(in, inout, len, [](float x, float y) { return std::max(x, y); }); }
template <typename T>
void min_fn(void* in, void* inout, int* len, MPI_Datatype*) { apply<T>(in, inout, len, [](float x, float y) { return std::min(x, y); }); }

MPI_Datatype two_byte_type() {
  static MPI_Datatype t = [] {
    MPI_Datatype d;
    MPI_Type_contiguous(2, MPI_BYTE, &d);
    MPI_Type_commit(&d);
    return d;
  }();
  return t;
}

template <typename T>
MPI_Op custom_op(ReduceOp op) {
  static std::map<ReduceOp, MPI_Op> ops;
  auto it = ops.find(op);
  if (it != ops.end()) return it->second;
  // Sums of these types never get here: the front end widens them to float32 (comm.cpp).
  LH_CHECK(op != ReduceOp::Sum, "backend mpi: a float16/bfloat16 sum reached the native reduction unwidened");
  MPI_User_function* fn = op == ReduceOp::Max ? max_fn<T> : min_fn<T>;
  MPI_Op handle;
  LH_CHECK_MPI(MPI_Op_create(fn, /*commute=*/1, &handle));
  ops[op] = handle;
  return handle;
}
}  // namespace

MPI_Datatype element_type(c10::ScalarType type) {
  switch (type) {
    case c10::kFloat: return MPI_FLOAT;
    case c10::kDouble: return MPI_DOUBLE;
    case c10::kInt: return MPI_INT32_T;
    case c10::kLong: return MPI_INT64_T;
    case c10::kShort: return MPI_INT16_T;
    case c10::kChar: return MPI_INT8_T;
    case c10::kByte: return MPI_UINT8_T;
    case c10::kBool: return MPI_C_BOOL;
    case c10::kHalf:
    case c10::kBFloat16: return two_byte_type();
    default:
      throw Unsupported(detail::str_cat("backend mpi does not support reductions on ", type, " tensors"));
  }
}

MPI_Op reduce_op(ReduceOp op, c10::ScalarType type) {
  if (type == c10::kHalf) return custom_op<c10::Half>(op);
  if (type == c10::kBFloat16) return custom_op<c10::BFloat16>(op);
  if (type == c10::kBool) {
    // Sum of booleans is "any"; max/min are or/and.
    return op == ReduceOp::Min ? MPI_LAND : MPI_LOR;
  }
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  return MPI_SUM;
}

MPI_Datatype row_type(int64_t bytes) {
  static std::map<int64_t, MPI_Datatype> cache;
  if (bytes <= 0) return MPI_BYTE;
  auto it = cache.find(bytes);
  if (it != cache.end()) return it->second;
  LH_CHECK(bytes <= INT32_MAX, "backend mpi: a row of ", bytes, " bytes is larger than MPI's int count limit");
  MPI_Datatype t;
  LH_CHECK_MPI(MPI_Type_contiguous(static_cast<int>(bytes), MPI_BYTE, &t));
  LH_CHECK_MPI(MPI_Type_commit(&t));
  cache[bytes] = t;
  return t;
}

}  // namespace longhaul::mpi
