// ProcessMesh on local thread-ranks: group sizes, rank order (ulysses fastest, then ring, then
// data parallel) and that each group really communicates among its members only.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "runtime/comm/local/communicator.h"
#include "core/errors.h"
#include "runtime/mesh.h"

namespace longhaul {
namespace {

int64_t sum_of_world_ranks(const CommPtr& group, int world_rank) {
  at::Tensor t = at::full({1}, int64_t(world_rank), at::kLong);
  group->all_reduce(t)->wait();
  return t.item<int64_t>();
}

TEST(ProcessMesh, EightRanksTwoReplicasOfTwoByTwo) {
  CommOptions o;
  o.timeout = std::chrono::seconds(20);
  local::run_ranks(8, [](Communicator& world_ref) {
    auto world = world_ref.shared_from_this();
    const int w = world->rank();
    ProcessMesh mesh(world, {.cp = 4, .ulysses = 2});
    EXPECT_EQ(mesh.dp_size(), 2);
    EXPECT_EQ(mesh.cp()->size(), 4);
    EXPECT_EQ(mesh.ulysses()->size(), 2);
    EXPECT_EQ(mesh.ring()->size(), 2);
    EXPECT_EQ(mesh.dp()->size(), 2);
    const int dp = w / 4, ring = (w % 4) / 2, uly = w % 2;
    EXPECT_EQ(mesh.cp()->rank(), w % 4);
    EXPECT_EQ(mesh.ulysses()->rank(), uly);
    EXPECT_EQ(mesh.ring()->rank(), ring);
    EXPECT_EQ(mesh.dp()->rank(), dp);
    // Members: cp = {4dp..4dp+3}; ulysses = {4dp+2ring, +1}; ring = {4dp+uly, 4dp+uly+2}; dp = {w%4, w%4+4}.
    EXPECT_EQ(sum_of_world_ranks(mesh.cp(), w), 16 * dp + 6);
    EXPECT_EQ(sum_of_world_ranks(mesh.ulysses(), w), 2 * (4 * dp + 2 * ring) + 1);
    EXPECT_EQ(sum_of_world_ranks(mesh.ring(), w), 2 * (4 * dp + uly) + 2);
    EXPECT_EQ(sum_of_world_ranks(mesh.dp(), w), 2 * (w % 4) + 4);
  }, o);
}

TEST(ProcessMesh, RejectsShapesThatDoNotDivide) {
  local::run_ranks(6, [](Communicator& world_ref) {
    auto world = world_ref.shared_from_this();
    EXPECT_THROW(ProcessMesh(world, {.cp = 4}), InvalidArgument);
    EXPECT_THROW(ProcessMesh(world, {.cp = 6, .ulysses = 4}), InvalidArgument);
    EXPECT_THROW(ProcessMesh(world, {.cp = 0}), InvalidArgument);
  });
}

// Ranks that pass different shapes (each valid alone), or one rank an invalid one: every rank
// fails at once naming the difference, instead of splitting into groups that do not match.
TEST(ProcessMesh, RanksThatDisagreeOnTheShapeFailTogether) {
  CommOptions o;
  o.timeout = std::chrono::seconds(20);
  local::run_ranks(4, [](Communicator& world_ref) {
    auto world = world_ref.shared_from_this();
    const auto start = Clock::now();
    try {
      ProcessMesh(world, {.cp = world->rank() == 0 ? 4 : 2});
      ADD_FAILURE() << "ranks with cp 4 and 2 built a mesh";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("rank 1 disagrees with rank 0 on cp (2 vs 4)"), std::string::npos)
          << e.what();
    }
    try {
      ProcessMesh(world, {.cp = world->rank() == 2 ? 3 : 2});
      ADD_FAILURE() << "rank 2's cp 3 on 4 ranks was accepted";
    } catch (const InvalidArgument& e) {
      const std::string says = world->rank() == 2 ? "not divisible by cp 3" : "rank 2 disagrees with rank 0 on arguments";
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
  }, o);
}

}  // namespace
}  // namespace longhaul
