#include "train/precision.h"

#include "core/enum_names.h"

namespace longhaul::train {

Precision precision_from_string(const std::string& name) {
  return enum_from_string(name, {Precision::Fp32, Precision::Fp64, Precision::Bf16}, "dtype");
}

const char* to_string(Precision p) {
  switch (p) {
    case Precision::Fp32: return "fp32";
    case Precision::Fp64: return "fp64";
    case Precision::Bf16: return "bf16";
  }
  return "?";
}

at::ScalarType master_dtype(Precision p) { return p == Precision::Fp64 ? at::kDouble : at::kFloat; }

at::ScalarType compute_dtype(Precision p) { return p == Precision::Bf16 ? at::kBFloat16 : master_dtype(p); }

}  // namespace longhaul::train
