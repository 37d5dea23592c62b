// Where the ranks run: every rank's host name and the local rank its launcher gave it, gathered
// over the world, and whether the two agree. A launcher variable read wrongly (or a host name
// that two nodes share) shows here first: on a host, local ranks must be 0..n-1 with local size n.
#pragma once

#include <string>
#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul {

struct RankPlace {
  std::string host;
  int local_rank = 0, local_size = 1;
};

// Collective over comm: rank r's entry is rank r's host (gethostname) and local rank / size.
std::vector<RankPlace> gather_placement(Communicator& comm, int local_rank, int local_size);

// Empty when every host's ranks number 0..n-1 locally with local size n; otherwise what is wrong,
// naming the host and the ranks ("host node1: ranks 0 and 1 both have local rank 0").
std::string check_placement(const std::vector<RankPlace>& places);

// "node1: 0 1 | node2: 2 3": the ranks of each host in the order hosts first appear.
std::string describe_placement(const std::vector<RankPlace>& places);

}  // namespace longhaul
