#include "runtime/comm/sim/communicator.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <tuple>

#include "core/errors.h"
#include "core/virtual_clock.h"
#include "runtime/comm/local/communicator.h"

namespace longhaul::sim {
namespace {

using virtual_clock::RankClock;

// What a receive needs to know of its matching send: when its last byte left the sender.
struct SendRecord {
  double leave_end;
  int64_t bytes;
};

// The state a group's ranks share: the sends in flight, keyed (src, dst, tag, n-th of that key).
struct Group {
  std::mutex mu;
  std::map<std::tuple<int, int, int, int64_t>, SendRecord> sends;
  std::map<std::tuple<uint64_t, int>, std::shared_ptr<Group>> children;  // (split number, color)

  std::shared_ptr<Group> child(uint64_t split, int color) {
    std::lock_guard<std::mutex> lock(mu);
    auto& g = children[{split, color}];
    if (!g) g = std::make_shared<Group>();
    return g;
  }
};

// The links' state of the whole world: a rank's egress is only touched by its own sends, its
// ingress only by its own receives, each from the rank's own thread.
struct Fabric {
  explicit Fabric(int size, Network n) : network(n), egress_free(size, 0.0), ingress_free(size, 0.0) {}
  Network network;
  std::vector<double> egress_free, ingress_free;
};

RankClock& clock_of_caller(const char* op) {
  RankClock* c = virtual_clock::current();
  LH_CHECK(c != nullptr, "backend sim: ", op, " on a thread without a virtual clock (virtual_clock::set_current)");
  return *c;
}

// Advances the clock to `t`, counting the wait as exposed communication.
void wait_until(RankClock& c, double t) {
  if (t > c.now) {
    c.comm_wait_s += t - c.now;
    c.now = t;
  }
}

class SimCommunicator : public Communicator {
 public:
  SimCommunicator(CommPtr inner, std::shared_ptr<Fabric> fabric, std::shared_ptr<Group> group,
                  std::vector<int> world_ranks)
      : Communicator(CommOptions{inner->timeout(), false}), inner_(std::move(inner)), fabric_(std::move(fabric)),
        group_(std::move(group)), world_ranks_(std::move(world_ranks)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return "sim"; }

  std::shared_ptr<Communicator> split(int color, int key) override {
    const uint64_t n = splits_++;
    // The members' world ranks, in the new order: every rank learns them through the split.
    auto sub = inner_->split(color, key);
    if (!sub) return nullptr;
    at::Tensor mine = at::tensor({static_cast<int64_t>(world_ranks_[rank()])}, at::kLong);
    at::Tensor all = at::empty({sub->size()}, at::kLong);
    sub->all_gather(all, mine)->wait();
    std::vector<int> world(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + sub->size());
    return std::make_shared<SimCommunicator>(sub, fabric_, group_->child(n, color), std::move(world));
  }

 protected:
  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override {
    RankClock* c = &clock_of_caller("send");
    const int me = world_ranks_[rank()], to = world_ranks_[peer];
    const Link& link = fabric_->network.between(me, to);
    const int64_t bytes = nbytes(t);
    const double start = std::max(c->now, fabric_->egress_free[me]);
    const double leave_end = start + static_cast<double>(bytes) / link.bytes_per_s;
    fabric_->egress_free[me] = leave_end;
    {
      std::lock_guard<std::mutex> lock(group_->mu);
      group_->sends[{rank(), peer, tag, sent_[{peer, tag}]++}] = SendRecord{leave_end, bytes};
    }
    return timed(inner_send(*inner_, t, peer, tag), detail::str_cat("send to peer ", peer),
                 [c, leave_end] { wait_until(*c, leave_end); });
  }

  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override {
    RankClock* c = &clock_of_caller("recv");
    const double posted = c->now;
    const auto key = std::make_tuple(peer, rank(), tag, received_[{peer, tag}]++);
    const int me = world_ranks_[rank()], from = world_ranks_[peer];
    auto fabric = fabric_;
    auto group = group_;
    return timed(inner_recv(*inner_, t, peer, tag), detail::str_cat("recv from peer ", peer), [=] {
      SendRecord s;
      {
        std::lock_guard<std::mutex> lock(group->mu);
        auto it = group->sends.find(key);
        LH_CHECK(it != group->sends.end(), "backend sim: recv from peer ", peer, " completed without its send record");
        s = it->second;
        group->sends.erase(it);
      }
      const Link& link = fabric->network.between(from, me);
      const double tx = static_cast<double>(s.bytes) / link.bytes_per_s;
      const double end = std::max(s.leave_end, fabric->ingress_free[me] + tx);  // queued behind earlier arrivals
      fabric->ingress_free[me] = end;
      wait_until(*c, std::max(end + link.latency_s, posted));
    });
  }

  bool supports_device(const at::Device& d) const override { return d.is_cpu() || d.is_meta(); }

 private:
  WorkPtr timed(WorkPtr inner, const std::string& what, std::function<void()> on_done) {
    auto w = std::make_shared<Work>(describe(what), timeout(), 0);
    w->add_child(std::move(inner));
    w->set_finish(std::move(on_done));
    return w;
  }

  CommPtr inner_;
  std::shared_ptr<Fabric> fabric_;
  std::shared_ptr<Group> group_;
  std::vector<int> world_ranks_;  // this group's ranks in the world (the topology's numbering)
  std::map<std::pair<int, int>, int64_t> sent_, received_;  // per (peer, tag)
  uint64_t splits_ = 0;
};

}  // namespace

std::vector<CommPtr> create_world(int size, const Network& network, CommOptions options) {
  LH_CHECK(network.ranks_per_node >= 1, "sim::create_world: ranks_per_node must be >= 1, got ",
           network.ranks_per_node);
  LH_CHECK(network.intra.bytes_per_s > 0 && network.inter.bytes_per_s > 0,
           "sim::create_world: link bandwidths must be > 0");
  options.nccl_order = false;
  auto inner = local::create_world(size, options);
  auto fabric = std::make_shared<Fabric>(size, network);
  auto group = std::make_shared<Group>();
  std::vector<int> ranks(size);
  for (int r = 0; r < size; ++r) ranks[r] = r;
  std::vector<CommPtr> comms;
  for (int r = 0; r < size; ++r) comms.push_back(std::make_shared<SimCommunicator>(inner[r], fabric, group, ranks));
  return comms;
}

}  // namespace longhaul::sim
