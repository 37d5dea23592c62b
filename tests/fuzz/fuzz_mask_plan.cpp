// libFuzzer target: masks and shard plans built from arbitrary integers, as users give them
// (document offsets, windows, block sizes, slice lists, T, P, layout). Construction either works
// or throws InvalidArgument / Unsupported; what works must be self-consistent: the area counted
// by runs equals the sum over rows, every row sits on exactly one rank, and the ranks' rows
// partition [0, T).
#include <fuzzer/FuzzedDataProvider.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "attention/mask.h"
#include "core/errors.h"
#include "parallel/shard_plan.h"

namespace {

using longhaul::Mask;

Mask build(FuzzedDataProvider& in, int64_t t) {
  const auto& families = longhaul::masks::family_names();
  if (in.ConsumeBool()) {  // a slice list
    std::vector<longhaul::MaskSlice> slices(in.ConsumeIntegralInRange<int>(0, 6));
    for (auto& s : slices) {
      s.q_begin = in.ConsumeIntegralInRange<int64_t>(-2, t + 2);
      s.q_end = in.ConsumeIntegralInRange<int64_t>(-2, t + 2);
      s.k_begin = in.ConsumeIntegralInRange<int64_t>(-2, t + 2);
      s.k_end = in.ConsumeIntegralInRange<int64_t>(-2, t + 2);
      if (in.ConsumeBool()) s.lo = in.ConsumeIntegralInRange<int64_t>(-t - 2, t + 2);
      if (in.ConsumeBool()) s.hi = in.ConsumeIntegralInRange<int64_t>(-t - 2, t + 2);
    }
    return Mask::from_slices(t, slices);
  }
  const std::string& name = families[in.ConsumeIntegralInRange<size_t>(0, families.size() - 1)];
  std::vector<int64_t> cu;
  const int docs = in.ConsumeIntegralInRange<int>(0, 8);
  for (int i = 0; i < docs; ++i) cu.push_back(in.ConsumeIntegralInRange<int64_t>(-1, t + 1));
  if (!cu.empty() && in.ConsumeBool()) cu.back() = t;  // often a valid end
  const int64_t param = in.ConsumeIntegralInRange<int64_t>(-2, t + 2);
  const int64_t param2 = in.ConsumeIntegralInRange<int64_t>(-2, t + 2);
  return longhaul::masks::make(name, t, cu, param, param2);
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_mask_plan: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const int64_t t = in.ConsumeIntegralInRange<int64_t>(-1, 300);
  const int p = in.ConsumeIntegralInRange<int>(-1, 9);
  const auto layout = static_cast<longhaul::Layout>(in.ConsumeIntegralInRange<int>(0, 3));
  try {
    const Mask mask = build(in, t);
    int64_t by_rows = 0;
    for (int64_t q = 0; q < t; ++q) by_rows += mask.area(q, q + 1, 0, t);
    check(by_rows == mask.area(0, t, 0, t), "area by runs != sum of the rows' areas");
    std::vector<int> owner(t, -1);
    for (int r = 0; r < p; ++r) {
      const auto plan = longhaul::ShardPlan::for_mask(t, mask, layout, p, r);
      const at::Tensor pos = plan.positions();
      const int64_t* v = pos.data_ptr<int64_t>();
      for (int64_t i = 0; i < pos.numel(); ++i) {
        check(v[i] >= 0 && v[i] < t, "a position outside [0, T)");
        check(owner[v[i]] < 0 || owner[v[i]] == r, "a row on two ranks");
        owner[v[i]] = r;
      }
    }
    if (p >= 1)
      for (int64_t i = 0; i < t; ++i) check(owner[i] >= 0, "a row on no rank");
  } catch (const longhaul::InvalidArgument&) {
  } catch (const longhaul::Unsupported&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_mask_plan: unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
