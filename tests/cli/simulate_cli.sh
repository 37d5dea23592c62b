#!/usr/bin/env bash
# Usage: simulate_cli.sh LONGHAUL. `longhaul simulate` on a small weak-scaling sweep: one JSON row
# per strategy × mask × ranks with positive rates and bytes (a window moves fewer bytes than
# causal on the ring), the table form, and bad flags failing with their message.
set -euo pipefail
bin=$1
fail() { echo "simulate_cli: $*" >&2; exit 1; }

json=$("$bin" simulate --ranks 2 4 --tokens-per-rank 256 --heads 8 --kv-heads 4 --head-dim 16 \
       --masks causal sliding_window_causal --mask-param 64 --strategies ring,allgather tokenring ulysses hybrid --json) \
  || fail "simulate failed: $json"
echo "$json"
rows=$(grep -c '"strategy"' <<<"$json")
[ "$rows" -eq 20 ] || fail "expected 20 rows (5 strategies x 2 masks x 2 rank counts), got $rows"
python3 - "$json" <<'PY' || fail "a row has no positive rate or bytes"
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.startswith("{")]
for r in rows:
    assert r["note"] == "-", r
    assert r["fwd_tflops"] > 0 and r["bwd_tflops"] > 0 and r["sent_mib"] > 0, r
    assert r["level"] == "simulated" and r["T"] == 256 * r["P"], r
    assert r["memory_gib"] > r["peak_mib"] / 1024 and r["device_memory_gib"] == 80, r
# A sliding window moves less than causal on the ring (only the halo travels).
ring = {(r["mask"], r["P"]): r["sent_mib"] for r in rows if r["strategy"] == "ring"}
assert ring[("sliding_window_causal", 4)] < ring[("causal", 4)], ring
PY

table=$("$bin" simulate --ranks 8 --tokens-per-rank 128 --heads 8 --kv-heads 8 --head-dim 16 --strategies ring) \
  || fail "simulate (table) failed"
grep -q 'fwd_tflops' <<<"$table" || fail "the table has no fwd_tflops column"

# A rank that cannot hold its share is marked infeasible with the numbers: 8M tokens on 2 ranks,
# all-gathered K,V (32 GiB) plus the rank's 4M rows of q, k, v, out and gradients exceed 80 GiB.
big=$("$bin" simulate --ranks 2 --tokens 8388608 --heads 8 --kv-heads 8 --head-dim 128 --strategies allgather \
      --forward-only --json) || fail "simulate (memory) failed: $big"
grep -q '"note": "infeasible: needs' <<<"$big" || fail "32M tokens of all-gathered K,V should not fit 80 GiB: $big"

expect_fail() {
  local want=$1; shift
  local out
  if out=$("$bin" simulate "$@" 2>&1); then fail "simulate $* should fail"; fi
  grep -q "$want" <<<"$out" || fail "simulate $*: expected '$want' in: $out"
}
expect_fail "unknown --preset 'a100'" --preset a100
expect_fail "dtype must be bf16, fp16 or fp32" --dtype int8
expect_fail "unknown mask family" --masks diagonal --ranks 2 --tokens-per-rank 64
echo "simulate_cli: ok"
