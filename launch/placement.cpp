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
}

std::vector<RankPlace> gather_placement(Communicator& comm, int local_rank, int local_size) {
  // One row per rank: the host name's bytes, then the local rank and size.
  at::Tensor mine = at::zeros({1, kHostBytes + 2}, at::kLong);
  int64_t* own = mine.data_ptr<int64_t>();
  char host[kHostBytes] = {};
  if (::gethostname(host, kHostBytes - 1) != 0) std::strcpy(host, "?");
  for (int64_t i = 0; i < kHostBytes && host[i]; ++i) own[i] = static_cast<unsigned char>(host[i]);
  own[kHostBytes] = local_rank;
  own[kHostBytes + 1] = local_size;
  at::Tensor all = at::empty({comm.size(), kHostBytes + 2}, at::kLong);
  comm.all_gather(all, mine)->wait();
  std::vector<RankPlace> places(comm.size());
  const auto* a = all.data_ptr<int64_t>();
  for (int r = 0; r < comm.size(); ++r) {
    const int64_t* row = a + r * (kHostBytes + 2);
    const int64_t len = std::find(row, row + kHostBytes, int64_t(0)) - row;
    places[r].host.assign(row, row + len);  // each byte back to a char
    places[r].local_rank = static_cast<int>(row[kHostBytes]);
    places[r].local_size = static_cast<int>(row[kHostBytes + 1]);
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

}  // namespace longhaul
