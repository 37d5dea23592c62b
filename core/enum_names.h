// Names of small enums on the command line and in Python: parses a name into one of `values` by
// their to_string(); an unknown name is an InvalidArgument listing the choices in order, e.g.
// "unknown layout 'x', expected contiguous, zigzag or striped".
#pragma once

#include <initializer_list>
#include <string>

#include "core/errors.h"

namespace longhaul {

template <typename E>
E enum_from_string(const std::string& name, std::initializer_list<E> values, const char* what) {
  std::string choices;
  size_t i = 0;
  for (E v : values) {
    if (name == to_string(v)) return v;
    choices += (i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + std::string(to_string(v));
    ++i;
  }
  throw InvalidArgument(detail::str_cat("unknown ", what, " '", name, "', expected ", choices));
}

}  // namespace longhaul
