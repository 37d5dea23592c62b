// ATen errors raised inside longhaul reach callers as longhaul's types (core/aten_boundary.h).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "attention/attention.h"
#include "core/aten_boundary.h"

namespace longhaul {
namespace {

template <typename Expected, typename Body>
std::string message_of_throw(Body&& body) {
  try {
    aten_boundary("entry", body);
  } catch (const Expected& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong type: " << e.what();
  }
  ADD_FAILURE() << "nothing thrown";
  return {};
}

TEST(AtenBoundary, TranslatesEachKindOfAtenError) {
  // A real ATen failure: an internal error, one line, named by the entry point, no C++ backtrace.
  const std::string plain = message_of_throw<Error>([] { return at::matmul(at::ones({2, 3}), at::ones({2, 3})); });
  EXPECT_NE(plain.find("entry: ATen: "), std::string::npos) << plain;
  EXPECT_EQ(plain.find("Exception raised from"), std::string::npos) << plain;
  EXPECT_TRUE((message_of_throw<InvalidArgument>([] { TORCH_CHECK_VALUE(false, "bad value"); })).find("bad value") !=
              std::string::npos);
  EXPECT_TRUE((message_of_throw<InvalidArgument>([] { TORCH_CHECK_TYPE(false, "bad type"); })).find("bad type") !=
              std::string::npos);
  EXPECT_TRUE((message_of_throw<Unsupported>([] { TORCH_CHECK_NOT_IMPLEMENTED(false, "no kernel"); })).find(
                  "no kernel") != std::string::npos);
  // Out of memory keeps torch's type, the one callers free memory on.
  EXPECT_THROW(aten_boundary("entry", [] { TORCH_CHECK_WITH(OutOfMemoryError, false, "oom"); }), c10::OutOfMemoryError);
  // Values and longhaul's own errors pass through untouched.
  EXPECT_EQ(aten_boundary("entry", [] { return 7; }), 7);
  EXPECT_THROW(aten_boundary("entry", [] { throw CommError("peer"); }), CommError);
}

// The function-try-block form the long entry points use (Trainer's constructor, step, evaluate,
// save and load).
int entry_with_try_block(bool aten) try {
  if (aten) return int(at::matmul(at::ones({2, 3}), at::ones({2, 3})).numel());
  throw TimeoutError("peer 1 silent");
} catch (...) {
  rethrow_from_aten("Entry::call");
}

TEST(AtenBoundary, FunctionTryBlockTranslatesTheSameWay) {
  try {
    entry_with_try_block(true);
    ADD_FAILURE() << "nothing thrown";
  } catch (const InvalidArgument& e) {
    ADD_FAILURE() << "a shape error inside ATen is an internal error here: " << e.what();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Entry::call: ATen: "), std::string::npos) << e.what();
  }
  EXPECT_THROW(entry_with_try_block(false), TimeoutError);
}

}  // namespace
}  // namespace longhaul
