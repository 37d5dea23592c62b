// torch's CPU unary ops on float and double (exp, log, sqrt, sin, cos, tanh, erf, ...) run through
// MKL's vector math library where torch is built with MKL (the x86 wheels). oneMKL 2024.2, the
// MKL of the torch 2.11 wheels, picks each function's kernel on that function's first call; when
// the first call runs on several of torch's intra-op threads at once, one thread's share can be
// computed by a low-accuracy kernel although high accuracy was asked for (pytorch/pytorch#188792).
// Seen here as a float64 reference's logsumexp off by a relative 4.5e-10, three times in full
// `ctest -j 2` runs and never alone. Calling every such function once, on one element and one thread,
// settles each choice before any concurrent use; later calls take the settled kernel.
#pragma once

#include <ATen/ATen.h>

#include <mutex>

namespace longhaul {

// Once per process (a call_once after the first): the list is torch's MKL-routed unary ops.
inline void warm_up_vector_math() {
  static std::once_flag once;
  std::call_once(once, [] {
    using Op = at::Tensor (*)(const at::Tensor&);
    const Op ops[] = {&at::exp, &at::log,  &at::log2, &at::log10, &at::sqrt, &at::sin, &at::cos,    &at::tan,
                      &at::tanh, &at::asin, &at::acos, &at::atan,  &at::erf,  &at::erfc, &at::erfinv, &at::trunc};
    for (const auto dtype : {at::kFloat, at::kDouble}) {
      const at::Tensor x = at::full({1}, 0.5, at::TensorOptions(dtype));
      for (const Op op : ops) op(x);
    }
  });
}

}  // namespace longhaul
