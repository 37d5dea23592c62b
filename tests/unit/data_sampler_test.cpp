// The DD sampler: b tokens per step on every rank, one bucket per step on all ranks, no piece
// twice, leftovers carried and counted, curriculum odds as draw ratios, exact resume.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "data/rng.h"
#include "data/sampler.h"
#include "core/errors.h"
#include "tests/unit/data_test_util.h"

namespace longhaul::data {
namespace {

using testing::offsets_of;

std::shared_ptr<const Decomposition> random_dd(int n_docs, uint64_t seed, BucketRange r = {}) {
  SplitMix64 g{seed};
  std::vector<int64_t> l;
  for (int i = 0; i < n_docs; ++i) l.push_back(int64_t(g.below(30000)));
  return std::make_shared<Decomposition>(offsets_of(l), r);
}

std::vector<StepPlan> drain(PlanSource& s) {
  std::vector<StepPlan> out;
  while (auto p = s.next()) out.push_back(std::move(*p));
  return out;
}

bool same(const StepPlan& a, const StepPlan& b) {
  if (a.step != b.step || a.cycle != b.cycle || a.bucket != b.bucket || a.sequences.size() != b.sequences.size())
    return false;
  for (size_t i = 0; i < a.sequences.size(); ++i)
    if (a.sequences[i].start != b.sequences[i].start || a.sequences[i].length != b.sequences[i].length) return false;
  return true;
}

TEST(DataSampler, EveryRankSameBucketExactlyBTokensNoPieceTwice) {
  auto dd = random_dd(4000, 1);
  const int dp = 4;
  const int64_t b = int64_t(dp) * 8192 * 2;
  std::vector<std::vector<StepPlan>> streams;
  std::vector<std::unique_ptr<DDSampler>> samplers;
  for (int r = 0; r < dp; ++r) {
    samplers.push_back(std::make_unique<DDSampler>(dd, SamplerOptions{b, dp, r, Curriculum::GrowP2, 8, 42}));
    streams.push_back(drain(*samplers.back()));
  }
  ASSERT_GT(streams[0].size(), 10u);
  EXPECT_EQ(int64_t(streams[0].size()), samplers[0]->steps_per_epoch());
  std::set<int64_t> used;
  std::map<int, std::set<int64_t>> per_cycle;
  int last_cycle = 0;
  for (size_t s = 0; s < streams[0].size(); ++s) {
    for (int r = 0; r < dp; ++r) {
      ASSERT_EQ(streams[r].size(), streams[0].size());
      const StepPlan& p = streams[r][s];
      EXPECT_EQ(p.bucket, streams[0][s].bucket) << "step " << s << ": every rank draws the same bucket";
      EXPECT_EQ(p.cycle, streams[0][s].cycle);
      EXPECT_EQ(p.seq_len, int64_t(1) << p.bucket);
      EXPECT_EQ(int64_t(p.sequences.size()) * p.seq_len, b / dp) << "step " << s << " rank " << r;
      for (const auto& q : p.sequences) {
        EXPECT_TRUE(used.insert(q.start).second) << "piece at " << q.start << " used twice";
        EXPECT_TRUE(per_cycle[p.cycle].insert(q.start).second);
      }
    }
    EXPECT_GE(streams[0][s].cycle, last_cycle) << "cycles advance";
    last_cycle = streams[0][s].cycle;
  }
  EXPECT_EQ(last_cycle, 7);
  // Leftovers: after the last cycle they are dropped and counted, and nothing else is lost.
  EXPECT_EQ(samplers[0]->dropped_pieces(), samplers[0]->leftover_pieces());
  EXPECT_EQ(samplers[0]->dropped_tokens(), samplers[0]->leftover_tokens());
  EXPECT_EQ(int64_t(used.size()) + samplers[0]->dropped_pieces(), dd->num_pieces());
  int64_t used_tokens = int64_t(streams[0].size()) * b;
  EXPECT_EQ(used_tokens + samplers[0]->dropped_tokens(), dd->kept_tokens());
  EXPECT_FALSE(samplers[0]->next().has_value()) << "the epoch is over";
}

TEST(DataSampler, LeftoversCarryToTheNextCycle) {
  // One bucket (2^3), 10 pieces, batches of 4 pieces, 3 cycles: parts of 3, 3, 4 pieces. Cycle 0
  // serves nothing (3 < 4) and carries 3; cycle 1 has 6: one batch, carries 2; cycle 2 has 6: one
  // batch, 2 left over and dropped.
  auto dd = std::make_shared<Decomposition>(offsets_of(std::vector<int64_t>(10, 8)), BucketRange{3, 3});
  DDSampler s(dd, SamplerOptions{32, 1, 0, Curriculum::Uniform, 3, 5});
  auto steps = drain(s);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].cycle, 1);
  EXPECT_EQ(steps[1].cycle, 2);
  EXPECT_EQ(s.dropped_pieces(), 2);
  EXPECT_EQ(s.dropped_tokens(), 16);
  EXPECT_EQ(s.leftover_pieces(), 2);
}

TEST(DataSampler, SameSeedSameStreamOtherSeedOtherStream) {
  auto dd = random_dd(2000, 2);
  SamplerOptions o{8192 * 2, 1, 0, Curriculum::GrowLinear, 4, 7};
  DDSampler a(dd, o), b(dd, o);
  o.seed = 8;
  DDSampler c(dd, o);
  auto sa = drain(a), sb = drain(b), sc = drain(c);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(same(sa[i], sb[i])) << "step " << i;
  bool differs = sa.size() != sc.size();
  for (size_t i = 0; !differs && i < sa.size(); ++i) differs = !same(sa[i], sc[i]);
  EXPECT_TRUE(differs);
}

TEST(DataSampler, ResumeAfterKStepsReproducesTheStream) {
  auto dd = random_dd(3000, 3);
  for (Curriculum cur : {Curriculum::GrowP2, Curriculum::Natural}) {
    SamplerOptions o{2 * 8192 * 2, 2, 1, cur, 8, 11};
    DDSampler whole(dd, o);
    auto full = drain(whole);
    ASSERT_GT(full.size(), 20u);
    for (size_t k : {size_t(0), size_t(1), size_t(7), full.size() / 2, full.size() - 1, full.size()}) {
      DDSampler first(dd, o);
      for (size_t i = 0; i < k; ++i) first.next();
      const std::string state = first.save_state();
      // Restored on a fresh sampler of another rank's options: the state is the same on all ranks.
      SamplerOptions other = o;
      other.dp_rank = 0;
      DDSampler rank0(dd, other);
      rank0.restore_state(state);
      o.dp_rank = 1;
      DDSampler resumed(dd, o);
      resumed.restore_state(state);
      auto rest = drain(resumed);
      ASSERT_EQ(rest.size(), full.size() - k) << "k=" << k;
      for (size_t i = 0; i < rest.size(); ++i) ASSERT_TRUE(same(rest[i], full[k + i])) << "k=" << k << " i=" << i;
      EXPECT_EQ(resumed.dropped_pieces(), whole.dropped_pieces());
      auto rest0 = drain(rank0);
      ASSERT_EQ(rest0.size(), rest.size());
      for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest0[i].bucket, rest[i].bucket);
    }
  }
}

// A state restored under other options names the option that changed; under the same options on
// another data set it names the data set; states saved before the options were named still load.
TEST(DataSampler, StateOfAnotherSamplerIsRefusedNamingWhatChanged) {
  auto dd = random_dd(500, 4);
  const SamplerOptions o{8192, 1, 0, Curriculum::GrowP2, 2, 1};
  const DDSampler a(dd, o);
  const auto refused = [&](DDSampler&& b, const std::string& state, const std::string& what) {
    try {
      b.restore_state(state);
      ADD_FAILURE() << "state accepted; expected: " << what;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  SamplerOptions seed2 = o, grow_linear = o, longer = o;
  seed2.seed = 2;
  grow_linear.curriculum = Curriculum::GrowLinear;
  longer.tokens_per_step = 16384;
  refused(DDSampler(dd, seed2), a.save_state(), "was made with seed 1, this sampler has seed 2");
  refused(DDSampler(dd, grow_linear), a.save_state(), "was made with curriculum grow_p2, this sampler has curriculum grow_linear");
  refused(DDSampler(dd, longer), a.save_state(), "was made with tokens_per_step 8192, this sampler has tokens_per_step 16384");
  refused(DDSampler(random_dd(500, 5), o), a.save_state(), "belongs to another data set or bucket range");
  refused(DDSampler(dd, o), "garbage", "expected a 'longhaul-dd-sampler-state 1' text");

  // Without its option lines (as saved before they existed) the state loads, and a changed
  // option is still caught by the fingerprint.
  std::string old_form;
  std::istringstream lines(a.save_state());
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("option.", 0) != 0) old_form += line + "\n";
  ASSERT_NE(old_form, a.save_state());
  DDSampler same(dd, o);
  EXPECT_NO_THROW(same.restore_state(old_form));
  refused(DDSampler(dd, seed2), old_form, "belongs to another data set or bucket range");
}

// A state with a negative step, negative drop counts or a cursor past its pool is refused whole:
// the sampler goes on as if the restore had not been tried.
TEST(DataSampler, AStateOutOfRangeIsRefusedAndLeavesTheSamplerAsItWas) {
  auto dd = random_dd(500, 4);
  const SamplerOptions o{8192, 1, 0, Curriculum::GrowP2, 2, 1};
  DDSampler a(dd, o), b(dd, o);
  a.next();
  const std::string good = a.save_state();
  auto edit = [&](const std::string& key, const std::string& value) {
    const size_t at = good.find("\n" + key + " ");
    EXPECT_NE(at, std::string::npos) << key << " in " << good;
    const size_t end = good.find('\n', at + 1);
    return good.substr(0, at + 1) + key + " " + value + good.substr(end);
  };
  for (const auto& [key, value, what] :
       {std::tuple<std::string, std::string, std::string>{"step", "-5", "saved step -5 is negative"},
        {"dropped", "-7 -7", "saved dropped pieces/tokens -7/-7 are negative"},
        {"cursor", "999999 0 0 0 0 0", "saved cursor 999999 of bucket 0 outside its pool"}}) {
    DDSampler c(dd, o);
    try {
      c.restore_state(edit(key, value));
      FAIL() << key << " " << value << " accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    auto x = c.next(), y = DDSampler(dd, o).next();
    ASSERT_TRUE(x && y);
    EXPECT_TRUE(same(*x, *y)) << "a refused state changed the sampler (" << key << ")";
  }
}

TEST(DataSampler, BadOptionsAndEmptyBucketSet) {
  auto dd = random_dd(500, 5);
  try {
    DDSampler s(dd, SamplerOptions{3 * 8192, 2, 0, Curriculum::GrowP2, 8, 0});
    FAIL() << "b not divisible by dp · 2^M accepted";
  } catch (const InvalidArgument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("tokens per step b = 24576 must be a positive multiple of data-parallel size · 2^M = 2 · 8192 = 16384"),
              std::string::npos) << m;
  }
  EXPECT_THROW(DDSampler(dd, SamplerOptions{8192, 2, 2, Curriculum::GrowP2, 8, 0}), InvalidArgument);
  EXPECT_THROW(DDSampler(dd, SamplerOptions{8192, 1, 0, Curriculum::GrowP2, 0, 0}), InvalidArgument);
  auto shorts = std::make_shared<Decomposition>(offsets_of({5, 100, 0, 255}), BucketRange{});
  try {
    DDSampler s(shorts, SamplerOptions{8192, 1, 0, Curriculum::GrowP2, 8, 0});
    FAIL() << "empty bucket set accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("the bucket set is empty: none of the 4 documents"), std::string::npos)
        << e.what();
  }
}

// Among the steps at which buckets a and c were both eligible, a's share of their draws must be
// odds(a) / (odds(a) + odds(c)), within 4.5 standard deviations (the seed is fixed: no flakes).
TEST(DataSampler, CurriculumOddsAreDrawRatios) {
  const BucketRange r{8, 13};
  std::vector<int64_t> lengths;
  for (int i = 8; i <= 13; ++i) lengths.insert(lengths.end(), size_t(1500) << (13 - i), int64_t(1) << i);
  auto dd = std::make_shared<Decomposition>(offsets_of(lengths), r);
  for (Curriculum cur : {Curriculum::Uniform, Curriculum::GrowLinear, Curriculum::GrowP2}) {
    const auto odds = curriculum_odds(cur, 6);
    DDSampler s(dd, SamplerOptions{8192, 1, 0, cur, 1, 123});
    auto steps = drain(s);
    EXPECT_EQ(steps.size(), 6u * 1500);
    for (auto [a, c] : {std::pair{0, 1}, std::pair{0, 5}, std::pair{2, 4}}) {
      int64_t na = 0, nc = 0;
      for (const auto& p : steps) {
        if (!((p.eligible >> a) & 1) || !((p.eligible >> c) & 1)) continue;
        na += p.bucket - 8 == a;
        nc += p.bucket - 8 == c;
      }
      const double n = double(na + nc), pa = odds[a] / (odds[a] + odds[c]);
      ASSERT_GT(n, 50) << to_string(cur);
      const double sigma = std::sqrt(pa * (1 - pa) / n);
      EXPECT_NEAR(double(na) / n, pa, 4.5 * sigma)
          << to_string(cur) << " buckets " << a << "," << c << ": " << na << " vs " << nc;
    }
  }
  EXPECT_EQ(curriculum_odds(Curriculum::GrowLinear, 6), (std::vector<double>{6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(curriculum_odds(Curriculum::GrowP2, 6), (std::vector<double>{32, 16, 8, 4, 2, 1}));
  EXPECT_EQ(curriculum_from_string("grow_p2"), Curriculum::GrowP2);
  EXPECT_THROW(curriculum_from_string("growp3"), InvalidArgument);
}

}  // namespace
}  // namespace longhaul::data
