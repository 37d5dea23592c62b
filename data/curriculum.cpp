#include "data/curriculum.h"

#include <cmath>

#include "core/errors.h"

namespace longhaul::data {

const char* to_string(Curriculum c) {
  switch (c) {
    case Curriculum::Uniform: return "uniform";
    case Curriculum::GrowLinear: return "grow_linear";
    case Curriculum::GrowP2: return "grow_p2";
    case Curriculum::Natural: return "natural";
  }
  return "?";
}

Curriculum curriculum_from_string(const std::string& name) {
  if (name == "uniform") return Curriculum::Uniform;
  if (name == "grow_linear" || name == "growlinear") return Curriculum::GrowLinear;
  if (name == "grow_p2" || name == "growp2") return Curriculum::GrowP2;
  if (name == "natural") return Curriculum::Natural;
  throw InvalidArgument("unknown curriculum '" + name + "', expected uniform, grow_linear, grow_p2 or natural");
}

std::vector<double> curriculum_odds(Curriculum c, int n) {
  LH_CHECK(n >= 1, "curriculum_odds: need at least one bucket, got ", n);
  std::vector<double> odds;
  if (c == Curriculum::Natural) return odds;
  for (int j = 0; j < n; ++j) {
    switch (c) {
      case Curriculum::Uniform: odds.push_back(1.0); break;
      case Curriculum::GrowLinear: odds.push_back(n - j); break;
      case Curriculum::GrowP2: odds.push_back(std::ldexp(1.0, n - 1 - j)); break;
      case Curriculum::Natural: break;
    }
  }
  return odds;
}

}  // namespace longhaul::data
