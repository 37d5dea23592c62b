#!/usr/bin/env bash
# Usage: bench_attention_cli.sh LONGHAUL [PLOT_PY]. `longhaul bench attention --quick` on 2
# thread-ranks: JSON rows of both levels tagged with their level, every distributed row with its
# LongCA columns and both predictions (planner, simulator, rsa included), weak scaling
# (--tokens-per-rank), CSV, bad flags failing with their message, and (when PLOT_PY is given and
# matplotlib imports) the figures drawn from this very output.
set -euo pipefail
bin=$1
plot=${2:-}
fail() { echo "bench_attention_cli: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" bench attention --quick --local 2 --strategies ring ulysses rsa --layouts zigzag --masks causal causal_document \
  --json > "$tmp/rows.jsonl" 2> "$tmp/err" || { cat "$tmp/err"; fail "bench attention --quick failed"; }
grep -q '# \[distributed 1/' "$tmp/err" || fail "no progress line on stderr"
python3 - "$tmp/rows.jsonl" <<'PY' || fail "rows do not hold what the protocol needs"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
kernel = [r for r in rows if r["level"] == "kernel"]
dist = [r for r in rows if r["level"] == "distributed"]
assert kernel and dist, (len(kernel), len(dist))
assert all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"] != 0]
sgemm = [r for r in kernel if r["backend"] == "sgemm"]
assert len(sgemm) == 1 and "best square float32 GEMM" in sgemm[0]["note"], sgemm
for r in dist:
    assert r["P"] == 2 and r["fwd_tflops_per_rank"] > 0 and r["bwd_tflops_per_rank"] > 0, r
    assert r["imbalance"] >= 1 and r["comm_ratio"] >= 0 and r["single_rank_ms"] > 0, r
    assert r["predicted_ms"] > 0, r
    # A time, not a ratio: how close it comes is the benchmark's business, not a test's.
    assert r["simulated_ms"] > 0 and r["simulated_over_measured"] > 0, r
assert {r["strategy"] for r in dist} == {"ring", "ulysses", "rsa"}, dist
PY

# Weak scaling: T = tokens per rank x P.
weak=$("$bin" bench attention --level distributed --local 2 --strategies ring --layouts zigzag --masks causal \
       --tokens-per-rank 192 --heads 2 --head-dim 16 --iters 1 --warmup 0 --no-progress --json) || fail "weak scaling run failed"
grep -q '"T": 384' <<<"$weak" || fail "--tokens-per-rank 192 at P=2 should run T=384: $weak"

csv=$("$bin" bench attention --level kernel --backends cpu --masks causal --tokens 256 --heads 2 --head-dim 16 \
      --passes fwd --iters 1 --warmup 0 --no-sdpa --sgemm-n 128 --no-progress --csv) || fail "csv run failed"
head -1 <<<"$csv" | grep -q '^level,backend,mask,T,' || fail "CSV header: $(head -1 <<<"$csv")"

expect_fail() {
  local want=$1; shift
  local out
  if out=$("$bin" bench attention "$@" 2>&1); then fail "bench attention $* should fail"; fi
  grep -q -- "$want" <<<"$out" || fail "bench attention $*: expected '$want' in: $out"
}
expect_fail "unknown level 'node'" --level node
expect_fail "give --tokens or --tokens-per-rank, not both" --tokens 64 --tokens-per-rank 32
expect_fail "--json and --csv exclude each other" --json --csv
expect_fail "unknown mask" --level kernel --masks diagonal --quick

if [ -n "$plot" ] && python3 -c "import matplotlib" 2>/dev/null; then
  python3 "$plot" "$tmp/rows.jsonl" -o "$tmp/fig" || fail "plot.py failed on the benchmark's own output"
  for f in kernel_tflops distributed_tflops predicted_vs_measured; do
    [ -s "$tmp/fig/$f.png" ] || fail "plot.py wrote no $f.png"
  done
fi
echo "bench_attention_cli: ok"
