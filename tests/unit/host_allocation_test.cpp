// keep_freed_host_memory (core/host_allocation.h): after it, a block far above glibc's mmap
// threshold comes from the heap, not from a fresh mmap, and freeing it leaves the heap as large as
// it was, so the next step's buffers find their pages already there. Each CTest test is its own
// process, so the changed malloc policy reaches no other test.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "core/host_allocation.h"
#include "tests/common/sanitized.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace longhaul {
namespace {

TEST(HostAllocation, LargeBlocksComeFromTheHeapAndStayThere) {
#if defined(LONGHAUL_TEST_SANITIZED) || !defined(__GLIBC__)
  GTEST_SKIP() << "the sanitizers' allocators (or a C library other than glibc) replace malloc's policy; the "
                  "normal build runs this test";
#else
  const size_t block = size_t(256) << 20;  // 8 times glibc's largest mmap threshold
  {
    // glibc's own policy first: such a block is mmap'd (what the test below must not see).
    const size_t mapped = mallinfo2().hblkhd;
    void* p = std::malloc(block);
    ASSERT_NE(p, nullptr);
    EXPECT_GE(mallinfo2().hblkhd, mapped + block);
    std::free(p);
  }
  ASSERT_TRUE(keep_freed_host_memory());
  const size_t mapped = mallinfo2().hblkhd;
  void* p = std::malloc(block);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, block);
  EXPECT_EQ(mallinfo2().hblkhd, mapped) << "the block was mmap'd";
  const size_t heap = mallinfo2().arena;
  EXPECT_GE(heap, block);
  std::free(p);
  EXPECT_EQ(mallinfo2().arena, heap) << "freeing the block gave the heap's top back to the system";
  void* again = std::malloc(block);  // served from the pages already there
  EXPECT_EQ(mallinfo2().arena, heap);
  std::free(again);
#endif
}

}  // namespace
}  // namespace longhaul
