// Work handles: completion, failure, deadlines, children and the finish step.
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "runtime/comm/work.h"
#include "core/errors.h"

namespace longhaul {
namespace {

TEST(Work, CompletesWhenAllPartsDo) {
  auto w = std::make_shared<Work>("test op", std::chrono::seconds(5), 2);
  EXPECT_FALSE(w->done());
  w->complete_part();
  EXPECT_FALSE(w->done());
  std::thread t([w] { w->complete_part(); });
  w->wait();
  t.join();
  EXPECT_TRUE(w->done());
}

TEST(Work, DeadlineNamesOperationAndElapsedTime) {
  auto w = std::make_shared<Work>("mpi recv from peer 3", std::chrono::milliseconds(100));
  try {
    w->wait();
    FAIL() << "no timeout";
  } catch (const TimeoutError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("mpi recv from peer 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("within 0.1 s"), std::string::npos) << msg;
    EXPECT_NE(msg.find("elapsed"), std::string::npos) << msg;
  }
}

// The exposed-wait clock counts the time a thread blocks, once for a composed Work, and nothing
// for a Work already complete; another thread's waits do not count.
TEST(Work, WaitClockCountsBlockedTimeOfThisThread) {
  auto parent = std::make_shared<Work>("parent", std::chrono::seconds(5), 0);
  auto child = std::make_shared<Work>("child", std::chrono::seconds(5), 1);
  parent->add_child(child);
  std::thread completer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    child->complete_part();
  });
  const double before = comm_wait_seconds();
  parent->wait();
  completer.join();
  const double blocked = comm_wait_seconds() - before;
  EXPECT_GE(blocked, 0.1);
  EXPECT_LT(blocked, 0.2);  // counted once, not once per nesting level
  const double again = comm_wait_seconds();
  Work::completed("done")->wait();
  EXPECT_LT(comm_wait_seconds() - again, 0.01);
  double other = -1;
  std::thread([&] { other = comm_wait_seconds(); }).join();
  EXPECT_EQ(other, 0.0);
}

TEST(Work, FailureIsRethrownWithReason) {
  auto w = std::make_shared<Work>("op", std::chrono::seconds(5));
  w->fail("peer vanished");
  EXPECT_THROW(w->wait(), CommError);
  EXPECT_THROW(w->done(), CommError);
}

TEST(Work, ChildrenAndFinishStep) {
  auto parent = std::make_shared<Work>("parent", std::chrono::seconds(5), 0);
  auto child = std::make_shared<Work>("child", std::chrono::seconds(5));
  int finished = 0;
  parent->add_child(child);
  parent->set_finish([&] { ++finished; });
  EXPECT_FALSE(parent->done());
  child->complete_part();
  parent->wait();
  parent->wait();
  EXPECT_TRUE(parent->done());
  EXPECT_EQ(finished, 1);  // once only
}

// then() appends: a stream-ordered backend's wait comes before the step that reads the result
// (the per-rank copy of an uneven all_gather), each once, on the waiting thread.
TEST(Work, ThenRunsAfterTheFinishAlreadySetInOrderOnce) {
  auto w = std::make_shared<Work>("op", std::chrono::seconds(5));
  std::string order;
  w->set_finish([&] { order += "sync;"; });
  w->then([&] { order += "copy;"; });
  w->then([&] { order += "more;"; });
  EXPECT_FALSE(w->done());
  EXPECT_EQ(order, "");
  w->complete_part();
  w->wait();
  w->wait();
  EXPECT_TRUE(w->done());
  EXPECT_EQ(order, "sync;copy;more;");
  // then() on a Work with no finish step yet is its first step.
  auto v = std::make_shared<Work>("op", std::chrono::seconds(5), 0);
  v->then([&] { order += "only;"; });
  v->wait();
  EXPECT_EQ(order, "sync;copy;more;only;");
}

// A finish step that throws (a stream-ordered backend's wait reporting an NCCL error) is not
// marked done: every later wait() reports it again instead of returning as if it had succeeded.
TEST(Work, AFailingFinishStepIsReportedOnEveryWait) {
  auto w = std::make_shared<Work>("op", std::chrono::seconds(5), 0);
  int runs = 0;
  w->then([&] {
    ++runs;
    throw CommError("op failed: NCCL error");
  });
  EXPECT_THROW(w->wait(), CommError);
  EXPECT_THROW(w->wait(), CommError);
  EXPECT_THROW(w->done(), CommError);
  EXPECT_EQ(runs, 3);
}

TEST(Work, WaitAllRethrowsFirstFailureAfterWaitingForAll) {
  auto ok = std::make_shared<Work>("ok", std::chrono::seconds(5));
  auto bad = std::make_shared<Work>("bad", std::chrono::seconds(5));
  bad->fail("broken");
  std::thread t([ok] { ok->complete_part(); });
  EXPECT_THROW(wait_all({bad, ok}), CommError);
  t.join();
  EXPECT_TRUE(ok->done());
}

}  // namespace
}  // namespace longhaul
