#include "launch/placement.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

#include "core/errors.h"

namespace longhaul {
namespace {
constexpr int64_t kHostBytes = 256;  // HOST_NAME_MAX is 64 on Linux; room for longer FQDNs
constexpr int64_t kGpuBytes = 64;    // a UUID as nvidia-smi prints it is 40 characters
// One row per rank: the host name's bytes, the GPU's, then the local rank and size.
constexpr int64_t kGpuAt = kHostBytes, kLocalAt = kHostBytes + kGpuBytes, kRowLen = kLocalAt + 2;

void put_text(int64_t* at, int64_t room, const std::string& text) {
  for (int64_t i = 0; i < room - 1 && i < static_cast<int64_t>(text.size()); ++i)
    at[i] = static_cast<unsigned char>(text[i]);
}
std::string get_text(const int64_t* at, int64_t room) {
  const int64_t len = std::find(at, at + room, int64_t(0)) - at;
  return std::string(at, at + len);  // each byte back to a char
}
}  // namespace

std::vector<RankPlace> gather_placement(Communicator& comm, int local_rank, int local_size, const std::string& gpu) {
  LH_CHECK(static_cast<int64_t>(gpu.size()) < kGpuBytes, "gather_placement: a GPU name of ", gpu.size(),
           " characters; at most ", kGpuBytes - 1, " fit: ", gpu);
  at::Tensor mine = at::zeros({1, kRowLen}, at::kLong);
  int64_t* own = mine.data_ptr<int64_t>();
  char host[kHostBytes] = {};
  if (::gethostname(host, kHostBytes - 1) != 0) std::strcpy(host, "?");
  put_text(own, kHostBytes, host);
  put_text(own + kGpuAt, kGpuBytes, gpu);
  own[kLocalAt] = local_rank;
  own[kLocalAt + 1] = local_size;
  at::Tensor all = at::empty({comm.size(), kRowLen}, at::kLong);
  comm.all_gather(all, mine)->wait();
  std::vector<RankPlace> places(comm.size());
  const auto* a = all.data_ptr<int64_t>();
  for (int r = 0; r < comm.size(); ++r) {
    const int64_t* row = a + r * kRowLen;
    places[r].host = get_text(row, kHostBytes);
    places[r].gpu = get_text(row + kGpuAt, kGpuBytes);
    places[r].local_rank = static_cast<int>(row[kLocalAt]);
    places[r].local_size = static_cast<int>(row[kLocalAt + 1]);
  }
  return places;
}

std::string check_placement(const std::vector<RankPlace>& places) {
  std::map<std::string, std::vector<int>> by_host;
  for (int r = 0; r < static_cast<int>(places.size()); ++r) by_host[places[r].host].push_back(r);
  for (const auto& [host, ranks] : by_host) {
    const int n = static_cast<int>(ranks.size());
    std::vector<int> owner(n, -1);
    for (int r : ranks) {
      const RankPlace& p = places[r];
      if (p.local_size != n)
        return detail::str_cat("host ", host, ": rank ", r, " has local size ", p.local_size, " but ", n,
                               " ranks run there");
      if (p.local_rank < 0 || p.local_rank >= n)
        return detail::str_cat("host ", host, ": rank ", r, " has local rank ", p.local_rank, " outside [0, ", n, ")");
      if (owner[p.local_rank] >= 0)
        return detail::str_cat("host ", host, ": ranks ", owner[p.local_rank], " and ", r, " both have local rank ",
                               p.local_rank);
      owner[p.local_rank] = r;
    }
  }
  return {};
}

std::string describe_placement(const std::vector<RankPlace>& places) {
  std::vector<std::string> hosts;  // in the order they first appear
  for (const RankPlace& p : places)
    if (std::find(hosts.begin(), hosts.end(), p.host) == hosts.end()) hosts.push_back(p.host);
  std::ostringstream out;
  for (size_t h = 0; h < hosts.size(); ++h) {
    out << (h ? " | " : "") << hosts[h] << ":";
    for (size_t r = 0; r < places.size(); ++r)
      if (places[r].host == hosts[h]) out << " " << r;
  }
  return out.str();
}

std::string describe_gpus(const std::vector<RankPlace>& places) {
  if (std::all_of(places.begin(), places.end(), [](const RankPlace& p) { return p.gpu.empty(); })) return "none";
  std::ostringstream out;
  for (size_t r = 0; r < places.size(); ++r)
    out << (r ? " | " : "") << r << " " << (places[r].gpu.empty() ? "-" : places[r].gpu);
  return out.str();
}

bool needs_gpu_census(Backend requested, bool nccl_built, int world_size) {
  return (requested == Backend::Auto || requested == Backend::Nccl) && nccl_built && world_size > 1;
}

NcclChoice choose_nccl(Backend requested, bool nccl_built, const std::vector<RankPlace>& places) {
  if (requested != Backend::Auto && requested != Backend::Nccl)
    return {false, detail::str_cat("backend ", to_string(requested), " asked for")};
  const bool forced = requested == Backend::Nccl;
  if (!nccl_built) {
    if (forced)
      throw Unsupported("backend nccl requested but this build of longhaul has no NCCL; configure with "
                        "LONGHAUL_WITH_NCCL=ON (needs CUDA)");
    return {false, "this build has no NCCL"};
  }
  const int n = static_cast<int>(places.size());
  if (n <= 1 && !forced) return {false, "one rank: no CUDA tensor travels between ranks"};
  // Where a rank's GPU is taken already: the first rank on it.
  std::map<std::string, int> first_on;
  std::string problem;
  for (int r = 0; r < n && problem.empty(); ++r) {
    const RankPlace& p = places[r];
    const std::string on_host = p.host.empty() ? std::string() : " on host " + p.host;
    if (p.gpu.empty()) {
      problem = detail::str_cat("rank ", r, on_host, " sees no CUDA device");
    } else if (auto [it, fresh] = first_on.emplace(p.gpu, r); !fresh) {
      problem = detail::str_cat("ranks ", it->second, " and ", r, on_host, " both use GPU ", p.gpu,
                                ", and NCCL refuses two ranks on one GPU");
    }
  }
  if (problem.empty()) return {true, n == 1 ? "asked for" : "every rank has a GPU of its own"};
  if (!forced) return {false, problem};
  throw InvalidArgument(detail::str_cat(
      "backend nccl: ", problem,
      "; give each rank a GPU of its own: at most as many ranks per node as GPUs, or one device per rank "
      "(CUDA_VISIBLE_DEVICES, Slurm --gpus-per-task=1)"));
}

}  // namespace longhaul
