#!/usr/bin/env bash
# `longhaul train --cp 2` launched by mpirun (MPI backend) and by torchrun (c10d/Gloo backend) on
# the same steps: both print JSON step and accuracy rows, the exposed communication wait of the
# attention lies within its time, and the two launches give bitwise-equal losses (two ranks: every
# sum has one order). Usage: train_launch.sh longhaul workdir torchrun.sh mpirun-command...
set -euo pipefail
bin=$1 dir=$2 torchrun=$3
shift 3
rm -rf "$dir"
mkdir -p "$dir"
args=(train --cp 2 --steps 4 --dim 32 --layers 1 --min-log2 5 --max-log2 8 --tokens-per-step 1024 --eval-docs 4
      --task-tokens 16384 --threads 1 --json)
fail() { echo "FAIL: $*"; exit 1; }
losses() { grep -o '"loss_bits": "[^"]*"' "$1"; }

"$@" -np 2 "$bin" "${args[@]}" --workdir "$dir/mpi" > "$dir/mpi.json"
"$torchrun" 2 "$bin" "${args[@]}" --workdir "$dir/torchrun" > "$dir/torchrun.json"
for f in mpi torchrun; do
  grep -q '"step": 4' "$dir/$f.json" || fail "$f: no step 4 row"
  grep -q '"eval": "recall"' "$dir/$f.json" || fail "$f: no accuracy rows"
  # attention_s = attention_compute_s + comm_wait_s, the wait non-negative and within the total.
  python3 - "$dir/$f.json" <<'PY' || fail "$f: inconsistent attention time split"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{") and '"step"' in l and '"eval"' not in l]
assert len(rows) == 4, rows
for r in rows:
    # Each time is printed rounded to 1e-4 s (±5e-5, three values in the sum) and to 3-4 digits.
    tol = 0.05 * r["attention_s"] + 1.5e-4
    assert r["comm_wait_measured"] == 1, r  # CPU ranks: wall time, the wait split off
    assert 0 <= r["comm_wait_s"] <= r["attention_s"] + tol, r
    assert abs(r["attention_compute_s"] + r["comm_wait_s"] - r["attention_s"]) <= tol, r
assert sum(r["comm_wait_s"] for r in rows) > 0, "no communication wait measured at CP=2"
PY
done
[ "$(losses "$dir/mpi.json")" = "$(losses "$dir/torchrun.json")" ] || {
  losses "$dir/mpi.json"; losses "$dir/torchrun.json"; fail "torchrun and mpirun losses differ"; }
echo "train_launch: ok ($(losses "$dir/mpi.json" | wc -l) equal losses)"
