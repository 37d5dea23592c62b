// An on/off switch read from the environment: unset, empty or "0" is off, "1" is on, anything
// else is an InvalidArgument naming the variable (a typo such as "true" must not silently leave a
// checking mode off).
#pragma once

#include <cstdlib>
#include <string>

#include "core/errors.h"

namespace longhaul {

inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v || std::string(v) == "0") return false;
  if (std::string(v) == "1") return true;
  throw InvalidArgument(detail::str_cat(name, "=", v, ": expected 1 (on) or 0 (off)"));
}

}  // namespace longhaul
