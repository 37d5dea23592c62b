#!/usr/bin/env bash
# Ranks launched wrongly under mpirun end with a named error on every rank, within the deadline:
# ranks given different options (they would train different models, or meet in collectives of
# different sizes), and a rank that exits before it initialises MPI (the others would wait in
# MPI_Init for ever).
set -u
mpirun=$1
longhaul=$2
work="${TMPDIR:-/tmp}/longhaul_mpi_bad_launch_$$"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
launch() { timeout 120 "$mpirun" --oversubscribe --bind-to none -np 2 "$@" > "$work/out" 2>&1; }

# Rank r runs `longhaul train --cp r+1`: both ranks name the option, exit 2, and nothing trains.
cat > "$work/per_rank.sh" <<SH
#!/usr/bin/env bash
exec "$longhaul" train --steps 2 --tokens-per-step 1024 --workdir "$work/w" -q \
  --timeout 60 --cp \$((OMPI_COMM_WORLD_RANK + 1)) 2> "$work/rank\${OMPI_COMM_WORLD_RANK}.err"
SH
chmod +x "$work/per_rank.sh"
launch "$work/per_rank.sh"
rc=$?
[ "$rc" = 2 ] || { cat "$work/out"; fail "ranks with different --cp: exit $rc, expected 2"; }
for r in 0 1; do
  grep -q "error (rank $r): longhaul train: rank 1 disagrees with rank 0 on --cp (this rank, $r, has $((r + 1)))" \
    "$work/rank$r.err" || { cat "$work/out" "$work/rank$r.err"; fail "rank $r did not name --cp"; }
done
cat "$work/rank0.err" "$work/rank1.err" | grep -q 'loss' && fail "a step ran before the options were compared"

# Every rank refuses the same bad option: each prints its error as one whole line (mpirun merges
# the ranks' output; a line written piece by piece interleaved with another rank's, 2 of 20 lines
# over five runs), and nothing is written before the refusal. Five runs.
for run in 1 2 3 4 5; do
  timeout 120 "$mpirun" --oversubscribe --bind-to none -np 4 "$longhaul" train --cp 3 --steps 1 -q \
    --workdir "$work/cp3" > "$work/out" 2>&1
  rc=$?
  [ "$rc" = 2 ] || { cat "$work/out"; fail "--cp 3 on 4 ranks: exit $rc, expected 2"; }
  good=$(grep -cE '^longhaul: error \(rank [0-3]\): train: --cp 3 does not divide the world of 4 ranks' "$work/out")
  all=$(grep -c 'error (rank' "$work/out")
  [ "$good" = 4 ] && [ "$all" = 4 ] || { cat "$work/out"; fail "run $run: $good well-formed error lines of $all, expected 4"; }
done
[ ! -e "$work/cp3/recall_task.h5" ] || fail "--cp 3: the recall task was written before the refusal"

# Rank 1 exits before MPI_Init: rank 0 ends with a timeout (exit 5) naming MPI_Init, well before
# the test's own limit.
cat > "$work/dead_rank.sh" <<SH
#!/usr/bin/env bash
[ "\$OMPI_COMM_WORLD_RANK" = 1 ] && exit 0
exec "$longhaul" info --timeout 5
SH
chmod +x "$work/dead_rank.sh"
start=$(date +%s)
launch "$work/dead_rank.sh"
rc=$?
elapsed=$(( $(date +%s) - start ))
[ "$rc" != 124 ] || { cat "$work/out"; fail "a rank that never started MPI hung the others"; }
grep -q "starting MPI (MPI_Init) did not complete within 5 s" "$work/out" ||
  { cat "$work/out"; fail "no timeout naming MPI_Init (exit $rc after $elapsed s)"; }
[ "$elapsed" -lt 60 ] || fail "took $elapsed s"

# A deadline no bootstrap can meet ends in the timeout error, not a crash.
launch "$longhaul" info --timeout 0.001
rc=$?
[ "$rc" = 5 ] || { cat "$work/out"; fail "--timeout 0.001: exit $rc, expected 5 (a timeout)"; }
echo "mpi bad launches: ok"
