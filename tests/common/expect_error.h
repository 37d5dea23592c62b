// expect_error<E>(f, part): f() must throw E (default InvalidArgument) with `part` in its message;
// no error, or another message, fails the test. What the bad-input tests share.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/errors.h"

namespace longhaul::testing {

template <typename E = InvalidArgument, typename F>
void expect_error(F f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message: " << e.what();
  }
}

}  // namespace longhaul::testing
