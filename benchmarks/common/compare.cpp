#include "benchmarks/common/compare.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <mutex>

#include "core/errors.h"

namespace longhaul::bench {

at::ScalarType dtype_from_name(const std::string& name, const std::vector<std::string>& allowed, const char* who) {
  struct Known {
    const char *short_name, *long_name;
    at::ScalarType type;
  };
  static const Known known[] = {{"bf16", "bfloat16", at::kBFloat16},
                                {"fp16", "float16", at::kHalf},
                                {"fp32", "float32", at::kFloat},
                                {"fp64", "float64", at::kDouble}};
  for (const Known& k : known)
    if ((name == k.short_name || name == k.long_name) &&
        std::find(allowed.begin(), allowed.end(), k.short_name) != allowed.end())
      return k.type;
  std::string names;
  for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
  throw InvalidArgument(detail::str_cat(who, ": unknown dtype '", name, "', expected one of ", names));
}

at::Generator seeded_generator(const c10::Device& device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  at::Generator gen = at::globalContext().defaultGenerator(device);
  const std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  return gen;
}

double relative_error(const at::Tensor& got, const at::Tensor& ref, double floor) {
  // On the tensors' device: copying large CUDA tensors to the host would stall other thread-ranks
  // still timing on the same GPU.
  const at::Tensor g = got.to(at::kDouble), r = ref.to(got.device(), at::kDouble);
  return ((g - r).abs().max() / r.abs().max().clamp_min(floor)).item<double>();
}

}  // namespace longhaul::bench
