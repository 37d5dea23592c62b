#include "benchmarks/comm/comm_bench.h"

#include <ATen/ATen.h>

#include <chrono>

#include "core/errors.h"
#include "core/offsets.h"

namespace longhaul::bench {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Element i of the message that rank `src` sends on channel `salt`: exact in float32.
at::Tensor pattern(int src, int salt, int64_t offset, int64_t n) {
  return at::remainder(at::arange(offset, offset + n, at::kLong) + (int64_t(src) * 7919 + salt * 104729), 8191)
      .to(at::kFloat);
}
int64_t count_wrong(const at::Tensor& got, const at::Tensor& want) { return got.ne(want).sum().item<int64_t>(); }

double max_over_ranks(Communicator& comm, double v) {
  at::Tensor t = at::full({1}, v, at::kDouble);
  comm.all_reduce(t, ReduceOp::Max)->wait();
  return t.item<double>();
}
int64_t sum_over_ranks(Communicator& comm, int64_t v) {
  at::Tensor t = at::full({1}, v, at::kLong);
  comm.all_reduce(t)->wait();
  return t.item<int64_t>();
}

// One benchmarked operation: buffers prepared once, `run` issues it and waits, `wrong` checks.
struct Case {
  int64_t bytes = 0;        // the size column
  double bytes_moved = 0;   // per rank, for algbw
  double bus_factor = 1;    // busbw = algbw · factor
  std::function<void()> run;
  std::function<int64_t()> wrong;
};

Case make_case(Communicator& comm, const std::string& op, int64_t bytes) {
  const int p = comm.size(), r = comm.rank();
  const int right = (r + 1) % p, left = (r + p - 1) % p;
  Case c;
  if (op == "ring") {
    const int64_t n = std::max<int64_t>(bytes / 4, 1);
    auto send = pattern(r, 0, 0, n), recv = at::empty({n}, at::kFloat);
    c.bytes = n * 4;
    c.bytes_moved = double(c.bytes);
    c.run = [&comm, send, recv, right, left]() mutable {
      comm.exchange({P2POp::send(send, right), P2POp::recv(recv, left)})->wait();
    };
    c.wrong = [recv, left, n] { return count_wrong(recv, pattern(left, 0, 0, n)); };
  } else if (op == "exchange") {  // both directions at once
    const int64_t n = std::max<int64_t>(bytes / 4, 1);
    auto to_right = pattern(r, 0, 0, n), to_left = pattern(r, 1, 0, n);
    auto from_left = at::empty({n}, at::kFloat), from_right = at::empty({n}, at::kFloat);
    c.bytes = n * 4;
    c.bytes_moved = 2.0 * double(c.bytes);
    c.run = [&comm, to_right, to_left, from_left, from_right, right, left]() mutable {
      comm.exchange({P2POp::send(to_right, right, 0), P2POp::send(to_left, left, 1), P2POp::recv(from_left, left, 0),
                     P2POp::recv(from_right, right, 1)})
          ->wait();
    };
    c.wrong = [=] {
      return count_wrong(from_left, pattern(left, 0, 0, n)) + count_wrong(from_right, pattern(right, 1, 0, n));
    };
  } else if (op == "all_to_all") {
    const int64_t per = std::max<int64_t>(bytes / 4 / p, 1);  // elements to each rank
    auto in = at::empty({per * p}, at::kFloat), out = at::empty({per * p}, at::kFloat);
    for (int j = 0; j < p; ++j) in.narrow(0, j * per, per).copy_(pattern(r, j, 0, per));
    c.bytes = per * p * 4;
    c.bytes_moved = double(c.bytes);
    c.bus_factor = double(p - 1) / p;
    c.run = [&comm, in, out]() mutable { comm.all_to_all(out, in)->wait(); };
    c.wrong = [=] {
      int64_t w = 0;
      for (int j = 0; j < p; ++j) w += count_wrong(out.narrow(0, j * per, per), pattern(j, r, 0, per));
      return w;
    };
  } else if (op == "all_gather") {
    const int64_t per = std::max<int64_t>(bytes / 4 / p, 1);
    auto in = pattern(r, 0, 0, per), out = at::empty({per * p}, at::kFloat);
    c.bytes = per * p * 4;
    c.bytes_moved = double(c.bytes);
    c.bus_factor = double(p - 1) / p;
    c.run = [&comm, in, out]() mutable { comm.all_gather(out, in)->wait(); };
    c.wrong = [=] {
      int64_t w = 0;
      for (int j = 0; j < p; ++j) w += count_wrong(out.narrow(0, j * per, per), pattern(j, 0, 0, per));
      return w;
    };
  } else if (op == "reduce_scatter" || op == "reduce_scatter_v") {
    // _v: per-rank counts, odd ranks one element more (shards of an odd length).
    const int64_t per = std::max<int64_t>(bytes / 4 / p, 1);
    std::vector<int64_t> counts(p, per);
    if (op == "reduce_scatter_v")
      for (int j = 1; j < p; j += 2) ++counts[j];
    const auto off = offsets_of(counts);
    const int64_t total = off[p], mine = off[r];
    auto in = pattern(r, 0, 0, total), out = at::empty({counts[r]}, at::kFloat);
    at::Tensor want = pattern(0, 0, mine, counts[r]);
    for (int j = 1; j < p; ++j) want += pattern(j, 0, mine, counts[r]);  // exact: sums stay below 2^24
    c.bytes = total * 4;
    c.bytes_moved = double(c.bytes);
    c.bus_factor = double(p - 1) / p;
    if (op == "reduce_scatter") counts.clear();  // equal parts: the collective's own split
    c.run = [&comm, in, out, counts]() mutable { comm.reduce_scatter(out, in, counts)->wait(); };
    c.wrong = [out, want] { return count_wrong(out, want); };
  } else {
    throw InvalidArgument("bench comm: unknown operation '" + op +
                          "', expected ring, exchange, all_to_all, all_gather, reduce_scatter or reduce_scatter_v");
  }
  return c;
}

}  // namespace

std::vector<Row> run_comm_bench(Communicator& comm, const CommBenchOptions& o) {
  // An all-gather holds P messages per rank, and every local rank holds its own.
  constexpr int64_t kLargest = int64_t(1) << 30;
  LH_CHECK(o.min_bytes > 0 && o.max_bytes >= o.min_bytes && o.max_bytes <= kLargest, "bench comm: --min-bytes ",
           o.min_bytes, " and --max-bytes ", o.max_bytes, ": expected 0 < min <= max <= 2^30 (1 GiB)");
  LH_CHECK(o.size_factor >= 2, "bench comm: --factor ", o.size_factor, ": expected >= 2");
  LH_CHECK(o.iters >= 1, "bench comm: --iters ", o.iters, ": expected >= 1");
  std::vector<Row> rows;
  for (const auto& op : o.ops) {
    for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= o.size_factor) {
      Case c = make_case(comm, op, bytes);
      const int iters = bytes >= (int64_t(16) << 20) ? std::max(3, o.iters / 4)
                        : bytes >= (int64_t(1) << 20) ? std::max(5, o.iters / 2) : o.iters;
      for (int i = 0; i < o.warmup; ++i) c.run();
      std::vector<double> times;
      for (int i = 0; i < iters; ++i) {
        comm.barrier()->wait();
        auto t0 = Clock::now();
        c.run();
        times.push_back(ms_since(t0) * 1e3);
      }
      const double us = max_over_ranks(comm, median(times));
      const int64_t wrong = sum_over_ranks(comm, c.wrong());
      const double algbw = c.bytes_moved / (us * 1e-6) / 1e9;
      rows.push_back(Row()
                         .add("op", op)
                         .add("P", int64_t(comm.size()))
                         .add("bytes", c.bytes)
                         .add("time_us", us)
                         .add("algbw_GBps", algbw)
                         .add("busbw_GBps", algbw * c.bus_factor)
                         .add("wrong", wrong));
    }
  }
  return rows;
}

double time_gemm_ms(int64_t n, int reps) {
  auto a = at::rand({n, n}, at::kFloat), b = at::rand({n, n}, at::kFloat), c = at::empty({n, n}, at::kFloat);
  at::mm_out(c, a, b);  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    at::mm_out(c, a, b);
    t.push_back(ms_since(t0));
  }
  return median(t);
}

int64_t gemm_size_for_ms(double ms) {
  const int64_t n0 = 512;
  const double t0 = time_gemm_ms(n0, 3);
  int64_t n = static_cast<int64_t>(n0 * std::cbrt(ms / t0));
  return std::max<int64_t>(64, n / 64 * 64);
}

Row run_overlap_bench(Communicator& comm, const CommBenchOptions& o) {
  LH_CHECK(comm.size() >= 2, "bench comm: the overlap row needs at least 2 ranks, got ", comm.size());
  Case x = make_case(comm, "ring", o.overlap_bytes);
  const int reps = 5;
  x.run();  // warm-up (also maps the buffers)
  std::vector<double> tx;
  for (int i = 0; i < reps; ++i) {
    comm.barrier()->wait();
    auto t0 = Clock::now();
    x.run();
    tx.push_back(ms_since(t0));
  }
  const double exchange_ms = max_over_ranks(comm, median(tx));

  // Same GEMM on every rank: rank 0's calibration, broadcast.
  at::Tensor n_t = at::full({1}, gemm_size_for_ms(o.gemm_ratio * exchange_ms), at::kLong);
  comm.broadcast(n_t, 0)->wait();
  const int64_t n = n_t.item<int64_t>();
  auto a = at::rand({n, n}, at::kFloat), b = at::rand({n, n}, at::kFloat), c = at::empty({n, n}, at::kFloat);
  at::mm_out(c, a, b);
  std::vector<double> tg;
  for (int i = 0; i < reps; ++i) {
    comm.barrier()->wait();
    auto t0 = Clock::now();
    at::mm_out(c, a, b);
    tg.push_back(ms_since(t0));
  }
  const double gemm_ms = max_over_ranks(comm, median(tg));

  // The exchange posted, then the GEMM, then wait(): how much of the transfer was left?
  const int p = comm.size(), r = comm.rank();
  const int64_t elems = x.bytes / 4;
  auto send = pattern(r, 0, 0, elems), recv = at::empty({elems}, at::kFloat);
  std::vector<double> elapsed, waited;
  for (int i = 0; i < reps; ++i) {
    comm.barrier()->wait();
    auto t0 = Clock::now();
    auto work = comm.exchange({P2POp::send(send, (r + 1) % p), P2POp::recv(recv, (r + p - 1) % p)});
    at::mm_out(c, a, b);
    auto t1 = Clock::now();
    work->wait();
    waited.push_back(ms_since(t1));
    elapsed.push_back(ms_since(t0));
  }
  const double wait_ms = max_over_ranks(comm, median(waited));
  const double elapsed_ms = max_over_ranks(comm, median(elapsed));
  const int64_t wrong = sum_over_ranks(comm, count_wrong(recv, pattern((r + p - 1) % p, 0, 0, elems)));
  double idle_gemm_ms = NAN, before_ms = NAN, idle_slowdown = NAN;
  if (o.idle_gemm_n > 0 && !std::isnan(o.gemm_before_comm_ms)) {
    comm.barrier()->wait();
    idle_gemm_ms = max_over_ranks(comm, time_gemm_ms(o.idle_gemm_n, 7));
    before_ms = max_over_ranks(comm, o.gemm_before_comm_ms);
    idle_slowdown = idle_gemm_ms / before_ms - 1.0;
  }
  const double wait_frac = wait_ms / exchange_ms;
  const double excess = (elapsed_ms - gemm_ms) / exchange_ms;
  const bool pass = wait_frac <= 0.10 && excess <= 1.3 && wrong == 0 && !(idle_slowdown > 0.03);
  return Row()
      .add("op", std::string("overlap"))
      .add("P", int64_t(p))
      .add("bytes", x.bytes)
      .add("gemm_n", n)
      .add("exchange_ms", exchange_ms)
      .add("gemm_ms", gemm_ms)
      .add("idle_gemm_before_ms", before_ms)
      .add("idle_gemm_ms", idle_gemm_ms)
      .add("idle_slowdown", idle_slowdown)
      .add("overlapped_ms", elapsed_ms)
      .add("wait_ms", wait_ms)
      .add("wait_frac", wait_frac)
      .add("excess_over_gemm", excess)
      .add("wrong", wrong)
      .add("pass", std::string(pass ? "yes" : "no"));
}

}  // namespace longhaul::bench
