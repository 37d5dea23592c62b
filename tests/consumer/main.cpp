// Uses the installed public header: a 3-rank local world sums its ranks.
#include <ATen/ATen.h>
#include <longhaul/longhaul.h>

#include <cstdio>

int main() {
  int64_t total = -1;
  longhaul::run_local_ranks(3, [&](longhaul::Communicator& comm) {
    at::Tensor t = at::full({1}, int64_t(comm.rank()), at::kLong);
    comm.all_reduce(t)->wait();
    if (comm.rank() == 0) total = t.item<int64_t>();
  });
  std::printf("consumer: longhaul %s, sum of ranks %lld\n", LONGHAUL_VERSION, static_cast<long long>(total));
  return total == 3 ? 0 : 1;
}
