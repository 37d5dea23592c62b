// The c10d backend and longhaul::init's launch detection, in one process: Gloo thread-ranks over a
// TCPStore on a free port run the shared collective checks; bootstrap failures (unreachable store,
// a rank that never arrives, disagreeing world sizes) end in a clear CommError within the
// deadline; torchrun/Slurm variables parse, and contradictory ones are InvalidArgument.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include "launch/placement.h"
#include "launch/world.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/comm/c10d/gloo.h"
#include "runtime/comm/c10d/communicator.h"
#include "runtime/comm/c10d/store.h"
#include "core/errors.h"
#include "tests/common/collectives.h"

namespace longhaul {
namespace {

TEST(Placement, LocalRanksMustNumberEachHostsRanks) {
  auto place = [](std::string h, int lr, int ls) { return RankPlace{std::move(h), lr, ls}; };
  const std::vector<RankPlace> good{place("a", 0, 2), place("a", 1, 2), place("b", 1, 2), place("b", 0, 2)};
  EXPECT_EQ(check_placement(good), "");
  EXPECT_EQ(describe_placement(good), "a: 0 1 | b: 2 3");
  // Two nodes with the same host name, or a launcher variable read wrongly.
  EXPECT_EQ(check_placement({place("a", 0, 2), place("a", 0, 2)}), "host a: ranks 0 and 1 both have local rank 0");
  EXPECT_EQ(check_placement({place("a", 0, 1), place("a", 0, 1)}), "host a: rank 0 has local size 1 but 2 ranks run there");
  EXPECT_EQ(check_placement({place("a", 2, 2), place("a", 0, 2)}), "host a: rank 0 has local rank 2 outside [0, 2)");
}

TEST(Placement, SlurmTasksOfThisNode) {
  EXPECT_EQ(slurm_tasks_on_node("4", 0), 4);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 2), 2);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 3), 1);
  EXPECT_EQ(slurm_tasks_on_node("3,1", 1), 1);
  EXPECT_THROW(slurm_tasks_on_node("2(x2)", 2), InvalidArgument);
  EXPECT_THROW(slurm_tasks_on_node("2(x", 0), InvalidArgument);
  EXPECT_THROW(slurm_tasks_on_node("two", 0), InvalidArgument);
  // srun --mpi=pmix: MPI's rank variables without its local size; this node's share of Slurm's.
  std::map<std::string, std::string> vars{{"PMIX_RANK", "3"}, {"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"},
                                          {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "1"},
                                          {"SLURM_STEP_TASKS_PER_NODE", "3,1"}};
  const LaunchInfo l = detect_launch([&](const char* n) { auto it = vars.find(n); return it == vars.end() ? nullptr : it->second.c_str(); });
  EXPECT_EQ(l.launcher, "mpirun");
  EXPECT_EQ(l.size, 4);
  EXPECT_EQ(l.local_rank, 0);
  EXPECT_EQ(l.local_size, 1);
  vars["SLURM_NODEID"] = "0";
  vars["SLURM_LOCALID"] = "2";
  const LaunchInfo l0 = detect_launch([&](const char* n) { auto it = vars.find(n); return it == vars.end() ? nullptr : it->second.c_str(); });
  EXPECT_EQ(l0.local_rank, 2);
  EXPECT_EQ(l0.local_size, 3);
}

TEST(Placement, GloosAddressIsTheRouteToTheStore) {
  EXPECT_EQ(c10d_backend::local_address_toward("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(c10d_backend::local_address_toward(""), "");
  EXPECT_EQ(c10d_backend::local_address_toward("no-such-host.invalid"), "");
}

using std::chrono::milliseconds;

// A port nobody listens on (bound, read, released).
int unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  // Port 0 would send the test to a port the kernel picks anew: fail here, with the reason.
  if (!ok) throw std::runtime_error(std::string("unused_port: no loopback port to borrow: ") + std::strerror(err));
  return ntohs(a.sin_port);
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Runs fn(rank) on `sizes.size()` threads; rank r believes the world has sizes[r] ranks. Returns
// each rank's error message ("" when it succeeded).
std::vector<std::string> run_ranks(const std::vector<int>& sizes, milliseconds timeout,
                                   const std::function<void(Communicator&)>& fn) {
  const int n = int(sizes.size());
  auto server = c10d_backend::connect_tcp_store("127.0.0.1", 0, 0, sizes[0], timeout, true);
  const int port = static_cast<c10d::TCPStore&>(*server).getPort();
  std::vector<std::string> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto store = r == 0 ? server : c10d_backend::connect_tcp_store("127.0.0.1", port, r, sizes[r], timeout, false);
        CommOptions o;
        o.timeout = timeout;
        auto comm = c10d_backend::create_world(store, r, sizes[r], o);
        fn(*comm);
      } catch (const std::exception& e) {
        errors[r] = e.what();
        if (errors[r].empty()) errors[r] = "(empty message)";
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

TEST(C10dWorld, SharedChecksOnThreeThreadRanks) {
  // Three ranks: the fewest where a reduction that rounds after each addition shows.
  auto errors = run_ranks({3, 3, 3}, milliseconds(20000), [](Communicator& comm) {
    EXPECT_EQ(comm.backend(), "c10d-gloo");
    EXPECT_EQ(comm.size(), 3);
    testing::check_point_to_point(comm);
    testing::check_exchange(comm);
    testing::check_all_to_all(comm);
    testing::check_all_gather(comm);
    testing::check_reduce_scatter(comm);
    testing::check_all_reduce(comm);
    testing::check_low_precision_sums(comm);
    testing::check_broadcast_and_barrier(comm);
    testing::check_split(comm);
    testing::check_zero_size(comm);
    testing::check_argument_errors(comm);
  });
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

TEST(C10dBootstrap, UnreachableStoreFailsWithinTheDeadline) {
  const int port = unused_port();
  const auto start = Clock::now();
  try {
    CommOptions o;
    o.timeout = milliseconds(1500);
    c10d_backend::create_world_tcp("127.0.0.1", port, 1, 2, o);
    ADD_FAILURE() << "a world was built without a store";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << msg;
    EXPECT_NE(msg.find("could not connect"), std::string::npos) << msg;
  }
  EXPECT_LT(seconds_since(start), 1.5 + 2.5);  // the deadline, and TCPStore's last retry delay
}

TEST(C10dBootstrap, ARankThatNeverArrivesIsNamed) {
  const auto start = Clock::now();
  auto errors = run_ranks({3, 3}, milliseconds(1000), [](Communicator&) {});  // rank 2 never starts
  EXPECT_LT(seconds_since(start), 10.0);
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("never arrived"), std::string::npos) << "rank " << r << ": " << errors[r];
    EXPECT_NE(errors[r].find("rank 2"), std::string::npos) << errors[r];
  }
}

TEST(C10dBootstrap, DisagreeingWorldSizesAreAnError) {
  const auto start = Clock::now();
  auto errors = run_ranks({2, 3}, milliseconds(1000), [](Communicator&) {});
  EXPECT_LT(seconds_since(start), 10.0);
  EXPECT_NE(errors[0].find("disagree on the world size"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("rank 1 was started with world size 3"), std::string::npos) << errors[0];
  EXPECT_FALSE(errors[1].empty());  // waits for a rank 2 that does not exist, or sees the disagreement
}

TEST(C10dBootstrap, BadRankIsInvalidArgument) {
  EXPECT_THROW(c10d_backend::create_world_tcp("127.0.0.1", 1234, 2, 2), InvalidArgument);
  EXPECT_THROW(c10d_backend::create_world_tcp("127.0.0.1", 0, 1, 2), InvalidArgument);  // port 0 only for rank 0
}

// ---- launch detection ---------------------------------------------------------------------

EnvLookup env_of(std::map<std::string, std::string> vars) {
  auto held = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [held](const char* name) -> const char* {
    auto it = held->find(name);
    return it == held->end() ? nullptr : it->second.c_str();
  };
}

TEST(Launch, Torchrun) {
  auto l = detect_launch(env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                                 {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29511"}, {"TORCHELASTIC_RUN_ID", "x"},
                                 {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}));  // torchrun inside a Slurm job
  EXPECT_EQ(l.launcher, "torchrun");
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.size, 4);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_size, 2);
  EXPECT_EQ(l.store_host, "node7");
  EXPECT_EQ(l.store_port, 29511);
  EXPECT_EQ(resolve_backend(Backend::Auto, l), Backend::C10d);
}

TEST(Launch, Slurm) {
  auto l = detect_launch(env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                                 {"SLURM_TASKS_PER_NODE", "4(x2)"}, {"SLURM_JOB_ID", "123456"},
                                 {"SLURM_NODELIST", "gpu[003-004],cpu1"}, {"SLURM_STEP_NODELIST", "gpu[004-005]"}}));
  EXPECT_EQ(l.launcher, "slurm");
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.size, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_size, 4);
  EXPECT_EQ(l.store_host, "gpu004");  // the step's first node wins over the job's
  EXPECT_EQ(l.store_port, kSlurmBasePort + 123456 % 10000);
  EXPECT_EQ(resolve_backend(Backend::Auto, l), Backend::C10d);
  auto m = detect_launch(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_NODELIST", "a,b"},
                                 {"MASTER_ADDR", "head"}, {"MASTER_PORT", "4000"}}));
  EXPECT_EQ(m.store_host, "head");
  EXPECT_EQ(m.store_port, 4000);
}

TEST(Launch, MpirunAndSingleProcess) {
  auto l = detect_launch(env_of({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "2"},
                                 {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}));
  EXPECT_EQ(l.launcher, "mpirun");
  EXPECT_EQ(l.rank, 2);
  EXPECT_EQ(resolve_backend(Backend::Auto, l), Backend::Mpi);
  EXPECT_THROW(resolve_backend(Backend::Local, l), InvalidArgument);
  auto s = detect_launch(env_of({}));
  EXPECT_EQ(s.launcher, "single process");
  EXPECT_EQ(resolve_backend(Backend::Auto, s), Backend::Local);
  EXPECT_EQ(resolve_backend(Backend::C10d, s), Backend::C10d);
  EXPECT_THROW(backend_from_string("gloo"), InvalidArgument);
  EXPECT_EQ(resolve_backend(Backend::Nccl, l), Backend::Nccl);  // bootstrapped over MPI
  EXPECT_EQ(resolve_backend(Backend::Nccl, s), Backend::Nccl);
}

// Without a GPU (or without NCCL in the build) --backend nccl is a clear error, not a hang; the
// GPU machine runs the positive case (tests/gpu/nccl_comm_test.cpp, InitWithBackendNccl).
TEST(Launch, NcclWithoutAGpuIsAClearError) {
  if (at::hasCUDA()) GTEST_SKIP() << "a CUDA device is present: the positive case runs in the gpu suite";
  InitOptions o;
  o.backend = Backend::Nccl;
  o.log_config = false;
  try {
    init(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("nccl") != std::string::npos || what.find("NCCL") != std::string::npos) << what;
  }
}

// auto gives CUDA tensors NCCL only where NCCL can run: several ranks, each on a GPU of its own,
// told apart by UUID whatever each rank's CUDA_VISIBLE_DEVICES; nccl forced names what is wrong.
TEST(Launch, NcclOnlyWhereEveryRankHasAGpuOfItsOwn) {
  auto on = [](std::string host, std::string gpu) { return RankPlace{std::move(host), 0, 1, std::move(gpu)}; };
  // Two nodes, two ranks each, one GPU per rank.
  const std::vector<RankPlace> own{on("a", "GPU-0"), on("a", "GPU-1"), on("b", "GPU-2"), on("b", "GPU-3")};
  EXPECT_TRUE(choose_nccl(Backend::Auto, true, own).use);
  EXPECT_TRUE(choose_nccl(Backend::Nccl, true, own).use);
  EXPECT_EQ(choose_nccl(Backend::Auto, true, own).why, "every rank has a GPU of its own");
  // Slurm --gpus-per-task=1: every rank sees one device (index 0), yet the GPUs differ.
  EXPECT_TRUE(choose_nccl(Backend::Auto, true, {on("a", "GPU-aa"), on("a", "GPU-bb")}).use);

  // Two ranks on one GPU (four ranks per node, two GPUs): auto keeps NCCL off and says why.
  const std::vector<RankPlace> shared{on("a", "GPU-0"), on("a", "GPU-1"), on("a", "GPU-0"), on("a", "GPU-1")};
  const NcclChoice off = choose_nccl(Backend::Auto, true, shared);
  EXPECT_FALSE(off.use);
  EXPECT_EQ(off.why, "ranks 0 and 2 on host a both use GPU GPU-0, and NCCL refuses two ranks on one GPU");
  const std::vector<RankPlace> blind{on("a", "GPU-0"), on("b", "")};
  EXPECT_FALSE(choose_nccl(Backend::Auto, true, blind).use);
  EXPECT_EQ(choose_nccl(Backend::Auto, true, blind).why, "rank 1 on host b sees no CUDA device");
  EXPECT_FALSE(choose_nccl(Backend::Auto, false, own).use);           // built without NCCL
  EXPECT_FALSE(choose_nccl(Backend::Mpi, true, own).use);             // a forced host backend alone
  EXPECT_FALSE(choose_nccl(Backend::Auto, true, {on("a", "GPU-0")}).use);  // one rank: local moves CUDA tensors

  // Forced: the error names the ranks, the GPU and the way out.
  auto forced_error = [&](const std::vector<RankPlace>& places) -> std::string {
    try {
      choose_nccl(Backend::Nccl, true, places);
    } catch (const InvalidArgument& e) {
      return e.what();
    }
    return "accepted";
  };
  const std::string two = forced_error(shared);
  EXPECT_NE(two.find("backend nccl: ranks 0 and 2 on host a both use GPU GPU-0"), std::string::npos) << two;
  EXPECT_NE(two.find("--gpus-per-task=1"), std::string::npos) << two;
  EXPECT_NE(forced_error(blind).find("rank 1 on host b sees no CUDA device"), std::string::npos);
  EXPECT_NE(forced_error({RankPlace{}}).find("backend nccl: rank 0 sees no CUDA device"), std::string::npos);
  EXPECT_TRUE(choose_nccl(Backend::Nccl, true, {on("a", "GPU-0")}).use);  // one rank, asked for
  EXPECT_THROW(choose_nccl(Backend::Nccl, false, own), Unsupported);

  // The census is a collective: every rank must take the same branch, from what all ranks share.
  EXPECT_TRUE(needs_gpu_census(Backend::Auto, true, 2));
  EXPECT_TRUE(needs_gpu_census(Backend::Nccl, true, 8));
  EXPECT_FALSE(needs_gpu_census(Backend::Auto, true, 1));
  EXPECT_FALSE(needs_gpu_census(Backend::Auto, false, 8));
  EXPECT_FALSE(needs_gpu_census(Backend::C10d, true, 8));
}

// Every rank's GPU travels with its host and local rank; a name that would not fit is refused.
TEST(Placement, GathersEveryRanksGpu) {
  constexpr int n = 3;
  auto ranks = local::create_world(n);
  std::vector<std::vector<RankPlace>> seen(n);
  std::vector<std::thread> threads;
  const std::string uuid = "GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] { seen[r] = gather_placement(*ranks[r], r, n, r == 1 ? "" : uuid + char('0' + r)); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(seen[r].size(), size_t(n));
    EXPECT_EQ(seen[r][0].gpu, uuid + "0");
    EXPECT_EQ(seen[r][1].gpu, "");
    EXPECT_EQ(seen[r][2].gpu, uuid + "2");
    EXPECT_EQ(seen[r][2].local_rank, 2);
    EXPECT_EQ(seen[r][2].local_size, n);
    EXPECT_EQ(seen[r][0].host, seen[r][2].host);
  }
  EXPECT_EQ(choose_nccl(Backend::Auto, true, seen[0]).why.rfind("rank 1 on host ", 0), 0u);
  EXPECT_EQ(describe_gpus(seen[0]), "0 " + uuid + "0 | 1 - | 2 " + uuid + "2");
  EXPECT_EQ(describe_gpus({RankPlace{}, RankPlace{}}), "none");
  auto one = local::create_world(1);
  EXPECT_THROW(gather_placement(*one[0], 0, 1, std::string(64, 'x')), InvalidArgument);
}

TEST(Launch, SlurmHostList) {
  EXPECT_EQ(first_slurm_host("node1"), "node1");
  EXPECT_EQ(first_slurm_host("gpu[003-005,9],cpu1"), "gpu003");
  EXPECT_EQ(first_slurm_host("a[1,2]-ib"), "a1-ib");
  EXPECT_THROW(first_slurm_host("gpu[003"), InvalidArgument);
}

void expect_invalid(std::map<std::string, std::string> vars, const std::string& fragment) {
  try {
    detect_launch(env_of(vars));
    ADD_FAILURE() << "accepted; expected an error with '" << fragment << "'";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Launch, ContradictionsAreInvalidArgument) {
  expect_invalid({{"RANK", "0"}}, "RANK and WORLD_SIZE must be set together");
  expect_invalid({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}, "rank 2 is outside [0, world size 2)");
  expect_invalid({{"RANK", "x"}, {"WORLD_SIZE", "2"}}, "RANK='x' is not an integer");
  expect_invalid({{"RANK", "1"}, {"WORLD_SIZE", "2"}}, "MASTER_ADDR is not");
  expect_invalid({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"SLURM_PROCID", "0"},
                  {"SLURM_NTASKS", "2"}}, "contradict SLURM_PROCID");
  expect_invalid({{"OMPI_COMM_WORLD_SIZE", "2"}, {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_RUN_ID", "x"}},
                 "both mpirun");
  expect_invalid({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}},
                 "MASTER_PORT=70000");
  expect_invalid({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"LOCAL_RANK", "2"},
                  {"LOCAL_WORLD_SIZE", "2"}}, "local rank 2");
  expect_invalid({{"SLURM_PROCID", "0"}}, "SLURM_PROCID and SLURM_NTASKS must be set together");
  auto torchrun2 = detect_launch(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"},
                                         {"TORCHELASTIC_RUN_ID", "x"}}));
  EXPECT_THROW(resolve_backend(Backend::Mpi, torchrun2), InvalidArgument);
  EXPECT_THROW(resolve_backend(Backend::Local, torchrun2), InvalidArgument);
}

}  // namespace
}  // namespace longhaul
