// What the host may still give (core/host_memory.h), read from directories laid out like / : the
// machine's MemAvailable alone; under a cgroup v1 or v2 memory limit, the limit less what the
// cgroup holds beyond its page cache; the tightest of the cgroup and those above it; a cgroup
// namespace's mount; "no limit" and malformed files passed over. And the scoped ceiling on the
// data segment (core/data_limit.h): an allocation past it fails, one after it succeeds again.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include <sys/resource.h>

#include "core/data_limit.h"
#include "core/host_memory.h"
#include "data/files.h"
#include "tests/common/sanitized.h"

namespace longhaul {
namespace {

namespace files = data::files;  // not std::filesystem: the torch wheel's copy is broken (data/files.h)
constexpr double MiB = 1 << 20;

// A directory standing for "/", removed at the end of the test.
class FakeRoot {
 public:
  FakeRoot() : root_(files::make_temp_dir("longhaul_host_memory")) {}
  ~FakeRoot() { files::remove_tree(root_); }
  void write(const std::string& path, const std::string& text) const {
    files::create_directories(files::parent_dir(root_ + path));
    std::ofstream(root_ + path) << text;
  }
  void meminfo(double mib) const {
    write("/proc/meminfo", "MemTotal:       25000000 kB\nMemAvailable:   " + std::to_string(int64_t(mib * 1024)) +
                               " kB\nBuffers:          1000 kB\n");
  }
  // A cgroup v1 memory hierarchy mounted at /sys/fs/cgroup/memory (its root: mount_root).
  void v1(const std::string& path, const std::string& mount_root = "/") const {
    write("/proc/self/cgroup", "5:cpu,cpuacct:/\n4:memory:" + path + "\n0::/\n");
    write("/proc/self/mountinfo",
          "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
          "35 31 0:32 " + mount_root + " /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
          "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
  }
  void v1_group(const std::string& dir, const std::string& limit, double usage_mib, double active_mib,
                double inactive_mib) const {
    const std::string d = "/sys/fs/cgroup/memory" + dir;
    write(d + "/memory.limit_in_bytes", limit + "\n");
    write(d + "/memory.usage_in_bytes", std::to_string(int64_t(usage_mib * MiB)) + "\n");
    write(d + "/memory.stat", "cache 1\nrss 2\ntotal_active_file " + std::to_string(int64_t(active_mib * MiB)) +
                                  "\ntotal_inactive_file " + std::to_string(int64_t(inactive_mib * MiB)) + "\n");
  }
  // The unified hierarchy alone (cgroup v2), mounted at /sys/fs/cgroup.
  void v2(const std::string& path) const {
    write("/proc/self/cgroup", "0::" + path + "\n");
    write("/proc/self/mountinfo", "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
  }
  void v2_group(const std::string& dir, const std::string& max, double current_mib, double file_mib) const {
    const std::string d = "/sys/fs/cgroup" + dir;
    write(d + "/memory.max", max + "\n");
    write(d + "/memory.current", std::to_string(int64_t(current_mib * MiB)) + "\n");
    write(d + "/memory.stat", "anon 5\nfile 9\nactive_file " + std::to_string(int64_t(file_mib / 2 * MiB)) +
                                  "\ninactive_file " + std::to_string(int64_t(file_mib / 2 * MiB)) + "\n");
  }
  const std::string& path() const { return root_; }

 private:
  std::string root_;
};

std::string bytes(double mib) { return std::to_string(int64_t(mib * MiB)); }

TEST(HostMemory, MemAvailableWithoutACgroup) {
  FakeRoot r;
  r.meminfo(20000);
  const HostMemory h = host_memory(r.path());
  EXPECT_DOUBLE_EQ(h.available_bytes, 20000 * MiB);
  EXPECT_EQ(h.bound, "MemAvailable");
  EXPECT_EQ(h.cgroup, "");
}

TEST(HostMemory, CgroupV1LimitLessWhatItHoldsBeyondPageCache) {
  FakeRoot r;
  r.meminfo(20000);
  r.v1("/job_7/step_0");
  r.v1_group("/job_7/step_0", bytes(1024), 400, 100, 50);
  const HostMemory h = host_memory(r.path());
  EXPECT_DOUBLE_EQ(h.available_bytes, (1024 - (400 - 150)) * MiB);
  EXPECT_EQ(h.bound, "the memory cgroup /job_7/step_0: limit 1.00 GiB, 250.0 MiB in use");
  EXPECT_EQ(h.cgroup, "/job_7/step_0");
}

TEST(HostMemory, TheTightestOfTheCgroupAndThoseAboveIt) {
  FakeRoot r;
  r.meminfo(20000);
  r.v1("/job_7/step_0");
  r.v1_group("/job_7/step_0", "9223372036854771712", 400, 0, 0);  // no limit of its own
  r.v1_group("/job_7", bytes(2048), 1800, 0, 0);                  // the job's: 248 MiB left
  r.v1_group("", bytes(8192), 1900, 0, 0);                         // the root's
  const HostMemory h = host_memory(r.path());
  EXPECT_DOUBLE_EQ(h.available_bytes, 248 * MiB);
  EXPECT_EQ(h.bound.rfind("the memory cgroup /job_7: limit 2.00 GiB", 0), 0u) << h.bound;
  // MemAvailable when it is less than every cgroup's headroom.
  r.meminfo(100);
  EXPECT_DOUBLE_EQ(host_memory(r.path()).available_bytes, 100 * MiB);
  EXPECT_EQ(host_memory(r.path()).bound, "MemAvailable");
}

TEST(HostMemory, CgroupNamespaceMountsItsOwnSubtree) {
  FakeRoot r;
  r.meminfo(20000);
  r.v1("/ns/inner", "/ns");  // the mount's root is /ns: the cgroup's directory is <mount>/inner
  r.v1_group("/inner", bytes(512), 12, 0, 0);
  EXPECT_DOUBLE_EQ(host_memory(r.path()).available_bytes, 500 * MiB);
}

TEST(HostMemory, CgroupV2MaxAndCurrent) {
  FakeRoot r;
  r.meminfo(20000);
  r.v2("/system.slice/job.scope");
  r.v2_group("/system.slice/job.scope", bytes(3072), 1100, 100);
  r.v2_group("/system.slice", "max", 5000, 0);
  const HostMemory h = host_memory(r.path());
  EXPECT_DOUBLE_EQ(h.available_bytes, (3072 - 1000) * MiB);
  EXPECT_EQ(h.bound.rfind("the memory cgroup /system.slice/job.scope: limit 3.00 GiB, 1000.0 MiB in use", 0), 0u)
      << h.bound;
  // "max" everywhere: MemAvailable.
  r.v2_group("/system.slice/job.scope", "max", 1100, 100);
  EXPECT_EQ(host_memory(r.path()).bound, "MemAvailable");
}

TEST(HostMemory, MalformedFilesArePassedOver) {
  FakeRoot r;
  r.meminfo(20000);
  r.v1("/job");
  r.v1_group("/job", "lots", 400, 0, 0);
  EXPECT_EQ(host_memory(r.path()).bound, "MemAvailable");
  r.write("/sys/fs/cgroup/memory/job/memory.limit_in_bytes", "-5\n");
  EXPECT_EQ(host_memory(r.path()).bound, "MemAvailable");
  r.write("/proc/self/mountinfo", "garbage line\n35 31 0:32 / /x rw - cgroup\n");
  EXPECT_EQ(host_memory(r.path()).bound, "MemAvailable");
  // Nothing readable at all: NaN.
  FakeRoot empty;
  EXPECT_TRUE(std::isnan(host_memory(empty.path()).available_bytes));
}

// This machine, as the preflight reads it: a positive number, at most MemAvailable.
TEST(HostMemory, Sizes) {
  EXPECT_EQ(memory_size(512 * MiB), "512.0 MiB");
  EXPECT_EQ(memory_size(3.25 * 1024 * MiB), "3.25 GiB");
  EXPECT_EQ(memory_size(NAN), "? MiB");
}

TEST(HostMemory, ThisMachine) {
  const HostMemory h = host_memory();
  EXPECT_GT(h.available_bytes, 0) << h.bound;
}

TEST(DataLimit, AnAllocationPastTheCeilingFailsAndTheLimitIsRestored) {
#if defined(LONGHAUL_TEST_SANITIZED)
  GTEST_SKIP() << "the sanitizers' allocators reserve their memory outside malloc's data segment; the normal "
                  "build runs this test";
#else
  ASSERT_GT(data_segment_bytes(), 0);
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_DATA, &before), 0);
  const size_t block = size_t(256) << 20;
  {
    const ScopedDataLimit ceiling(int64_t(64) << 20);
    ASSERT_TRUE(ceiling.active());
    void* p = std::malloc(block);
    EXPECT_EQ(p, nullptr) << "a 256 MiB block under a 64 MiB ceiling";
    std::free(p);
    void* small = std::malloc(size_t(1) << 20);  // within it
    EXPECT_NE(small, nullptr);
    std::free(small);
  }
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_DATA, &after), 0);
  EXPECT_EQ(after.rlim_cur, before.rlim_cur);
  void* p = std::malloc(block);
  EXPECT_NE(p, nullptr);
  std::free(p);
  EXPECT_FALSE(ScopedDataLimit(0).active());
#endif
}

}  // namespace
}  // namespace longhaul
