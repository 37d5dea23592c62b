#include "data/step_plan.h"

#include <algorithm>

#include "core/errors.h"

namespace longhaul::data {

StepPlan group_share(const StepPlan& whole, int groups, int group) {
  LH_CHECK(groups >= 1 && group >= 0 && group < groups, "group_share: group ", group, " outside [0, groups = ",
           groups, ")");
  const int64_t n = static_cast<int64_t>(whole.sequences.size()), base = n / groups, rem = n % groups;
  const int64_t begin = group * base + std::min<int64_t>(group, rem), end = begin + base + (group < rem ? 1 : 0);
  StepPlan share = whole;
  share.sequences.assign(whole.sequences.begin() + begin, whole.sequences.begin() + end);
  return share;
}

}  // namespace longhaul::data
