#include "runtime/comm/sim/communicator.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
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

// A collective NCCL runs natively: when each member posted it (NaN until it has).
struct CollectiveRecord {
  std::vector<double> posted;
  int finished = 0;
};

// The state a group's ranks share: the sends in flight, keyed (src, dst, tag, n-th of that key),
// and the native collectives in flight, by their number in the group.
struct Group {
  std::mutex mu;
  std::map<std::tuple<int, int, int, int64_t>, SendRecord> sends;
  std::map<uint64_t, CollectiveRecord> collectives;
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

  // One NCCL collective on the NCCL backend: ncclAllGather / ncclReduceScatter for equal parts,
  // grouped ncclBroadcast / ncclReduce (one per part) for uneven ones. Both run NCCL's rings.
  WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) override {
    return native("all_gather", ring_bytes(out, rows), [&] { return inner_->all_gather(out, in, rows); });
  }
  WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                            ReduceOp op) override {
    return native("reduce_scatter", ring_bytes(in, rows), [&] { return inner_->reduce_scatter(out, in, rows, op); });
  }

 private:
  // The bytes the busiest link of a ring carries when every part j travels from (or to) its rank
  // over P - 1 links: each link carries every part but one, (P - 1)·part for equal parts.
  static double ring_bytes(const at::Tensor& whole, const std::vector<int64_t>& rows) {
    if (whole.size(0) == 0) return 0;
    const double row = double(nbytes(whole)) / double(whole.size(0));
    int64_t total = 0, least = rows[0];
    for (int64_t n : rows) {
      total += n;
      least = std::min(least, n);
    }
    return row * double(total - least);
  }

  // NCCL's rings: inside one node every step crosses NVLink. Across nodes NCCL runs one ring per
  // NIC, each carrying 1/m of the data and leaving its node through a different GPU's NIC (m =
  // members per node): a NIC carries moved/m, and a GPU forwards the other (m - 1)/m over NVLink.
  double ring_seconds(double moved) const {
    const Network& net = fabric_->network;
    const int P = size();
    std::map<int, int> per_node;
    for (int w : world_ranks_) ++per_node[w / net.ranks_per_node];
    if (per_node.size() == 1) return moved / net.intra.bytes_per_s + (P - 1) * net.intra.latency_s;
    int m = P;
    for (const auto& [node, members] : per_node) m = std::min(m, members);
    return std::max(moved / (m * net.inter.bytes_per_s), moved * (m - 1) / (m * net.intra.bytes_per_s)) +
           (P - 1) * net.inter.latency_s;
  }

  // A native collective: it starts when its last member posts it and takes ring_seconds; the
  // data moves through the wrapped communicator. (Its links are not marked busy: the transfers
  // this models never overlap point-to-point ones in the strategies.)
  template <typename Post>
  WorkPtr native(const char* op, double moved_bytes, Post post) {
    RankClock* c = &clock_of_caller(op);
    const uint64_t n = collectives_++;
    {
      std::lock_guard<std::mutex> lock(group_->mu);
      auto& rec = group_->collectives[n];
      if (rec.posted.empty()) rec.posted.assign(size(), std::numeric_limits<double>::quiet_NaN());
      rec.posted[rank()] = c->now;
    }
    const double seconds = ring_seconds(moved_bytes);
    auto group = group_;
    const int P = size();
    // The wrapped collective completes only after every member posted it, so all times are in.
    return timed(post(), op, [c, n, seconds, group, P] {
      double start = 0;
      {
        std::lock_guard<std::mutex> lock(group->mu);
        auto it = group->collectives.find(n);
        LH_CHECK(it != group->collectives.end(), "backend sim: collective #", n, " completed without its record");
        for (double t : it->second.posted) {
          LH_CHECK(!std::isnan(t), "backend sim: collective #", n, " completed before every member posted it");
          start = std::max(start, t);
        }
        if (++it->second.finished == P) group->collectives.erase(it);
      }
      wait_until(*c, start + seconds);
    });
  }

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
  uint64_t splits_ = 0, collectives_ = 0;
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
