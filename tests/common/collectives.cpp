#include "tests/common/collectives.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <numeric>

#include "core/errors.h"
#include "core/offsets.h"

namespace longhaul::testing {
namespace {

// Deterministic content of what rank `src` sends on channel `salt`: small integers, exact in
// every dtype tested (bf16 holds integers up to 256 exactly).
at::Tensor pattern(int src, int salt, at::IntArrayRef shape, at::ScalarType dtype) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return at::remainder(at::arange(n, at::kLong) * 3 + src * 17 + salt * 5, 61).to(dtype).view(shape);
}

const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kDouble, at::kBFloat16, at::kLong, at::kHalf};

// Bit-equal to the exact result rounded once into got's dtype: what a sum accumulated in float32
// (exact for these small integers) gives; sums of many ranks leave the range where bf16 and fp16
// hold integers exactly, and there a reduction that rounded after each addition would differ.
bool same_values(const at::Tensor& got, const at::Tensor& want_f64) {
  return at::equal(got, want_f64.to(got.scalar_type()));
}

}  // namespace

bool all_ranks_pass(Communicator& comm, bool mine) {
  at::Tensor flag = at::full({1}, mine ? 1 : 0, at::kInt);
  comm.all_reduce(flag, ReduceOp::Min)->wait();
  return flag.item<int>() == 1;
}

void check_point_to_point(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  const int right = (r + 1) % p, left = (r + p - 1) % p;
  for (auto dtype : kDtypes) {
    for (int64_t n : {0, 1, 7, 1000}) {
      at::Tensor out = pattern(r, int(n), {n, 3}, dtype);
      at::Tensor in = at::full({n, 3}, -1, dtype);
      auto ws = comm.send(out, right, 3);
      auto wr = comm.recv(in, left, 3);
      wr->wait();
      ws->wait();
      EXPECT_TRUE(wr->done());
      EXPECT_TRUE(at::equal(in, pattern(left, int(n), {n, 3}, dtype)))
          << comm.backend() << " rank " << r << " dtype " << dtype << " n " << n;
    }
  }
  // FIFO per (peer, tag): two messages with the same tag arrive in order.
  at::Tensor a = pattern(r, 1, {5}, at::kFloat), b = pattern(r, 2, {5}, at::kFloat);
  at::Tensor ra = at::empty({5}), rb = at::empty({5});
  auto w1 = comm.send(a, right, 9), w2 = comm.send(b, right, 9);
  auto w3 = comm.recv(ra, left, 9), w4 = comm.recv(rb, left, 9);
  wait_all({w1, w2, w3, w4});
  EXPECT_TRUE(at::equal(ra, pattern(left, 1, {5}, at::kFloat)));
  EXPECT_TRUE(at::equal(rb, pattern(left, 2, {5}, at::kFloat)));
}

void check_exchange(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  const int right = (r + 1) % p, left = (r + p - 1) % p;
  at::Tensor to_r = pattern(r, 0, {33, 2}, at::kDouble), to_l = pattern(r, 1, {33, 2}, at::kDouble);
  at::Tensor from_l = at::empty({33, 2}, at::kDouble), from_r = at::empty({33, 2}, at::kDouble);
  comm.exchange({P2POp::send(to_r, right, 0), P2POp::send(to_l, left, 1), P2POp::recv(from_l, left, 0),
                 P2POp::recv(from_r, right, 1)})
      ->wait();
  EXPECT_TRUE(at::equal(from_l, pattern(left, 0, {33, 2}, at::kDouble)));
  EXPECT_TRUE(at::equal(from_r, pattern(right, 1, {33, 2}, at::kDouble)));
}

void check_all_to_all(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  // Uneven: rank s sends count(s, d) rows to rank d (zeros included).
  auto count = [](int s, int d) { return int64_t((s * 2 + d) % 3); };
  for (auto dtype : kDtypes) {
    std::vector<int64_t> in_rows(p), out_rows(p);
    for (int j = 0; j < p; ++j) {
      in_rows[j] = count(r, j);
      out_rows[j] = count(j, r);
    }
    auto ioff = offsets_of(in_rows), ooff = offsets_of(out_rows);
    at::Tensor in = at::empty({ioff[p], 4}, dtype);
    for (int j = 0; j < p; ++j) in.narrow(0, ioff[j], in_rows[j]).copy_(pattern(r, j, {in_rows[j], 4}, dtype));
    at::Tensor out = at::full({ooff[p], 4}, -1, dtype);
    comm.all_to_all(out, in, out_rows, in_rows)->wait();
    for (int j = 0; j < p; ++j)
      EXPECT_TRUE(at::equal(out.narrow(0, ooff[j], out_rows[j]), pattern(j, r, {out_rows[j], 4}, dtype)))
          << "rows from rank " << j << " dtype " << dtype;
  }
  // Equal split (empty row counts).
  at::Tensor in = at::empty({2 * p, 3}, at::kFloat), out = at::empty({2 * p, 3}, at::kFloat);
  for (int j = 0; j < p; ++j) in.narrow(0, 2 * j, 2).copy_(pattern(r, j, {2, 3}, at::kFloat));
  comm.all_to_all(out, in)->wait();
  for (int j = 0; j < p; ++j) EXPECT_TRUE(at::equal(out.narrow(0, 2 * j, 2), pattern(j, r, {2, 3}, at::kFloat)));
}

void check_all_gather(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  std::vector<int64_t> rows(p);
  for (int j = 0; j < p; ++j) rows[j] = j + (j % 2);  // 0, 2, 2, 4, …
  auto off = offsets_of(rows);
  for (auto dtype : kDtypes) {
    at::Tensor in = pattern(r, 0, {rows[r], 2, 3}, dtype);
    at::Tensor out = at::full({off[p], 2, 3}, -1, dtype);
    comm.all_gather(out, in, rows)->wait();
    for (int j = 0; j < p; ++j)
      EXPECT_TRUE(at::equal(out.narrow(0, off[j], rows[j]), pattern(j, 0, {rows[j], 2, 3}, dtype)));
  }
}

void check_reduce_scatter(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  std::vector<int64_t> rows(p);
  for (int j = 0; j < p; ++j) rows[j] = (j * 5) % 4 + 1;
  auto off = offsets_of(rows);
  for (auto dtype : kDtypes) {
    for (auto op : {ReduceOp::Sum, ReduceOp::Max}) {
      at::Tensor in = pattern(r, 0, {off[p], 3}, dtype);
      at::Tensor out = at::full({rows[r], 3}, -1, dtype);
      comm.reduce_scatter(out, in, rows, op)->wait();
      at::Tensor want = pattern(0, 0, {off[p], 3}, at::kDouble);
      for (int s = 1; s < p; ++s) {
        auto x = pattern(s, 0, {off[p], 3}, at::kDouble);
        want = op == ReduceOp::Sum ? want + x : at::maximum(want, x);
      }
      EXPECT_TRUE(same_values(out, want.narrow(0, off[r], rows[r])))
          << "reduce_scatter " << to_string(op) << " dtype " << dtype;
    }
  }
}

void check_all_reduce(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  for (auto dtype : kDtypes) {
    for (auto op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      at::Tensor t = pattern(r, 0, {11, 3}, dtype);
      comm.all_reduce(t, op)->wait();
      at::Tensor want = pattern(0, 0, {11, 3}, at::kDouble);
      for (int s = 1; s < p; ++s) {
        auto x = pattern(s, 0, {11, 3}, at::kDouble);
        want = op == ReduceOp::Sum ? want + x : op == ReduceOp::Max ? at::maximum(want, x) : at::minimum(want, x);
      }
      EXPECT_TRUE(same_values(t, want)) << "all_reduce " << to_string(op) << " dtype " << dtype;
    }
  }
}

void check_low_precision_sums(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  // Element e: rank e % p holds `big`, every other rank 1. Rounding after each addition loses the
  // ones that meet `big` first (big + 1 rounds back to big in both dtypes), in whatever order a
  // backend adds, for some e once p >= 3; one rounding of the float32 sum keeps big + p - 1.
  for (auto [dtype, big] : {std::pair{at::kBFloat16, 256.0}, std::pair{at::kHalf, 2048.0}}) {
    at::Tensor mine = at::ones({p, 3}, at::kDouble);
    mine.narrow(0, r, 1).fill_(big);
    const at::Tensor want = at::full({p, 3}, big + (p - 1), at::kDouble);
    at::Tensor t = mine.to(dtype);
    comm.all_reduce(t, ReduceOp::Sum)->wait();
    EXPECT_TRUE(same_values(t, want)) << "all_reduce sum, dtype " << dtype << ": got " << t.select(1, 0)
                                      << " want " << big + (p - 1) << " in every element";
    at::Tensor out = at::zeros({1, 3}, dtype);
    comm.reduce_scatter(out, mine.to(dtype), {}, ReduceOp::Sum)->wait();
    EXPECT_TRUE(same_values(out, want.narrow(0, r, 1)))
        << "reduce_scatter sum, dtype " << dtype << ": got " << out << " want " << big + (p - 1);
  }
}

void check_broadcast_and_barrier(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  for (int root = 0; root < p; ++root) {
    at::Tensor t = r == root ? pattern(root, 7, {9, 2}, at::kFloat) : at::zeros({9, 2});
    comm.broadcast(t, root)->wait();
    EXPECT_TRUE(at::equal(t, pattern(root, 7, {9, 2}, at::kFloat))) << "broadcast from " << root;
  }
  for (int i = 0; i < 3; ++i) comm.barrier()->wait();
}

void check_split(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  // Two colors, keys reversed: new rank order is the reverse of the old one within a color.
  auto sub = comm.split(r % 2, -r);
  ASSERT_NE(sub, nullptr);
  int members = 0, before = 0;
  for (int j = 0; j < p; ++j)
    if (j % 2 == r % 2) {
      ++members;
      if (j > r) ++before;
    }
  EXPECT_EQ(sub->size(), members);
  EXPECT_EQ(sub->rank(), before);
  EXPECT_EQ(sub->backend(), comm.backend());
  at::Tensor t = at::full({1}, int64_t(r), at::kLong);
  sub->all_reduce(t)->wait();
  int64_t want = 0;
  for (int j = r % 2; j < p; j += 2) want += j;
  EXPECT_EQ(t.item<int64_t>(), want);
  // A negative color opts out.
  auto none = comm.split(r == 0 ? -1 : 0, r);
  if (r == 0) {
    EXPECT_EQ(none, nullptr);
  } else {
    ASSERT_NE(none, nullptr);
    EXPECT_EQ(none->size(), p - 1);
    EXPECT_EQ(none->rank(), r - 1);
    none->barrier()->wait();
  }
}

void check_zero_size(Communicator& comm) {
  const int p = comm.size();
  at::Tensor empty_in = at::empty({0, 5}), empty_out = at::empty({0, 5});
  comm.all_to_all(empty_out, empty_in)->wait();
  comm.all_gather(empty_out, empty_in)->wait();
  comm.reduce_scatter(empty_out, empty_in)->wait();
  comm.all_reduce(empty_in)->wait();
  comm.broadcast(empty_in, p - 1)->wait();
  at::Tensor rows0 = at::empty({4, 0});  // rows without elements
  at::Tensor gathered = at::empty({4 * p, 0});
  comm.all_gather(gathered, rows0)->wait();
  EXPECT_EQ(gathered.size(0), 4 * p);
}

void check_argument_errors(Communicator& comm) {
  const int p = comm.size();
  at::Tensor strided = at::zeros({4, 4}).t();
  EXPECT_THROW(comm.send(strided, 0), InvalidArgument);
  try {
    comm.send(strided, 0);
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("not contiguous"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(comm.backend()), std::string::npos) << e.what();
  }
  at::Tensor t = at::zeros({4});
  EXPECT_THROW(comm.recv(t, p), InvalidArgument);
  EXPECT_THROW(comm.send(t, -1), InvalidArgument);
  EXPECT_THROW(comm.send(t, 0, kMaxUserTag), InvalidArgument);
  at::Tensor out = at::zeros({4 * p + 1});
  EXPECT_THROW(comm.all_gather(out, t), InvalidArgument);                          // wrong total
  EXPECT_THROW(comm.all_gather(out, t, std::vector<int64_t>(p + 1, 1)), InvalidArgument);  // counts per rank
  at::Tensor other = at::zeros({4 * p}, at::kDouble);
  EXPECT_THROW(comm.all_gather(other, t), InvalidArgument);  // dtype
  at::Tensor shape = at::zeros({4 * p, 2});
  EXPECT_THROW(comm.all_to_all(shape, t), InvalidArgument);  // row shape
  try {
    comm.all_to_all(shape, t);
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("row shapes differ"), std::string::npos) << e.what();
  }
  // Buffers of one call that share memory: refused on every rank before anything moves.
  const auto expect_shared = [&](const char* what, const std::function<void()>& call) {
    SCOPED_TRACE(what);
    try {
      call();
      ADD_FAILURE() << what << " accepted buffers that share memory";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("share memory"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  at::Tensor buf = at::zeros({8 * p});
  expect_shared("all_gather", [&] { comm.all_gather(buf, buf.narrow(0, 8 * (p - 1), 8)); });
  expect_shared("all_to_all", [&] { comm.all_to_all(buf, buf); });
  at::Tensor inside = buf.narrow(0, 0, 8);
  expect_shared("reduce_scatter", [&] { comm.reduce_scatter(inside, buf); });
  const int peer = (comm.rank() + 1) % p;
  expect_shared("the receive from peer", [&] {
    comm.exchange({P2POp::send(buf.narrow(0, 0, 4), peer), P2POp::recv(buf.narrow(0, 2, 4), peer)});
  });
  expect_shared("the receive from peer", [&] {
    comm.exchange({P2POp::recv(buf.narrow(0, 0, 4), peer), P2POp::recv(buf.narrow(0, 3, 4), peer)});
  });
}

void check_size_mismatch(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  if (p < 2) return;
  // Rank 0 sends 12 floats to rank 1, which expects 10: rank 1 gets an error with both sizes.
  if (r == 0) {
    comm.send(at::zeros({12}), 1, 5)->wait();
  } else if (r == 1) {
    at::Tensor small = at::zeros({10});
    try {
      comm.recv(small, 0, 5)->wait();
      ADD_FAILURE() << "a mismatched receive succeeded";
    } catch (const CommError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("peer 0"), std::string::npos) << msg;
      EXPECT_NE(msg.find("40"), std::string::npos) << msg;  // the receive's 40 bytes
    }
  }
  comm.barrier()->wait();
}

void check_collective_count_mismatch(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  if (p < 2) return;
  // Rank 1 must fail: a CommError naming the peer (it alone sees the short message), or, where
  // the backend compares collectives first (Gloo, checking mode), the same InvalidArgument on
  // every rank.
  const auto expect_short = [&](const char* what, const std::function<void()>& call, const std::string& says) {
    SCOPED_TRACE(what);
    try {
      call();
      EXPECT_NE(r, 1) << "rank 1 received fewer bytes than it expected, without an error";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("differs across ranks"), std::string::npos) << e.what();
    } catch (const CommError& e) {
      EXPECT_EQ(r, 1) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    comm.barrier()->wait();
  };
  // all_to_all: one row of 4 floats to every rank, but rank 1 expects 2 rows from rank 0.
  expect_short("all_to_all", [&] {
    std::vector<int64_t> out_rows(p, 1), in_rows(p, 1);
    if (r == 1) out_rows[0] = 2;
    at::Tensor in = at::ones({p, 4}), out = at::full({p + (r == 1), 4}, -1.0f);
    comm.all_to_all(out, in, out_rows, in_rows)->wait();
  }, "rank 0");
  // all_gather: every rank contributes one row; rank 1 believes rank 0 contributes 2.
  expect_short("all_gather", [&] {
    std::vector<int64_t> rows(p, 1);
    if (r == 1) rows[0] = 2;
    at::Tensor in = at::ones({rows[r], 4}), out = at::full({p + (r == 1), 4}, -1.0f);
    comm.all_gather(out, in, rows)->wait();
  }, "rank 0");
  // broadcast: the root sends 4 floats, rank 1 expects 8.
  expect_short("broadcast", [&] {
    at::Tensor t = at::ones({r == 1 ? 8 : 4});
    comm.broadcast(t, 0)->wait();
  }, "rank 0");
}

void check_timeout(Communicator& comm) {
  const int p = comm.size(), r = comm.rank();
  if (p < 2) return;
  const auto saved = comm.timeout();
  comm.set_timeout(std::chrono::milliseconds(300));
  at::Tensor t = at::zeros({3});
  if (r == 0) {
    auto start = Clock::now();
    auto w = comm.recv(t, 1, 77);
    try {
      w->wait();
      ADD_FAILURE() << "a receive nobody sent completed";
    } catch (const TimeoutError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("recv from peer 1"), std::string::npos) << msg;
      EXPECT_NE(msg.find("elapsed"), std::string::npos) << msg;
    }
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_GE(s, 0.29);
    EXPECT_LT(s, 5.0);
    comm.set_timeout(saved);
    comm.barrier()->wait();
    w = nullptr;  // the late message below completes the abandoned receive
  } else {
    comm.set_timeout(saved);
    comm.barrier()->wait();
    if (r == 1) comm.send(at::ones({3}), 0, 77)->wait();
  }
  comm.barrier()->wait();
}

}  // namespace longhaul::testing
