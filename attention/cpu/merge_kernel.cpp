// Exact merge of a partial result over another key set into float accumulators (LSE rule).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/cpu/params.h"

namespace longhaul::cpu {

template <typename T>
void merge_kernel(const MergeParams<T>& p) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  at::parallel_for(0, p.t, 256, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t h = 0; h < p.h; ++h) {
        T& la = p.lse_acc[h * p.t + t];
        const T lb = p.lse_b[h * p.t + t];
        if (lb == neg_inf) continue;  // b saw no key: nothing to add
        T* oa = p.out_acc + (t * p.h + h) * p.d;
        const T* ob = p.out_b + (t * p.h + h) * p.d;
        if (la == neg_inf) {
          std::copy(ob, ob + p.d, oa);
          la = lb;
          continue;
        }
        const T mx = std::max(la, lb), mn = std::min(la, lb);
        const T lse = mx + std::log1p(std::exp(mn - mx));
        const T wa = std::exp(la - lse), wb = std::exp(lb - lse);
        for (int64_t c = 0; c < p.d; ++c) oa[c] = wa * oa[c] + wb * ob[c];
        la = lse;
      }
    }
  });
}

template void merge_kernel<float>(const MergeParams<float>&);
template void merge_kernel<double>(const MergeParams<double>&);

}  // namespace longhaul::cpu
