#!/usr/bin/env bash
# Usage: frozen_rank.sh MPIRUN PROGRAM [DEADLINE_S]. Passes when the job ends non-zero within
# DEADLINE + 10 s and a surviving rank reported the deadline error naming the stopped peer.
set -u
mpirun=$1 prog=$2 deadline=${3:-3}
out=$(mktemp)
start=$(date +%s%3N)
timeout --signal=KILL 120 "$mpirun" --oversubscribe --bind-to none -np 3 "$prog" "$deadline" >"$out" 2>&1
rc=$?
elapsed_ms=$(( $(date +%s%3N) - start ))
elapsed="$((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))"
cat "$out"
echo "frozen_rank: exit code $rc after $elapsed s (deadline $deadline s)"
fail=0
[ "$rc" -eq 0 ] && { echo "FAIL: the job exited 0"; fail=1; }
[ "$rc" -eq 137 ] && { echo "FAIL: the job hung and was killed by the test's own 120 s limit"; fail=1; }
if (( elapsed_ms > (${deadline%.*} + 10) * 1000 )); then echo "FAIL: took longer than deadline + 10 s"; fail=1; fi
grep -q "did not complete within ${deadline}.0 s" "$out" || { echo "FAIL: no deadline error in the output"; fail=1; }
grep -q "peer 1" "$out" || { echo "FAIL: the error does not name the stopped peer 1"; fail=1; }
# The stopped rank must not linger.
pkill -KILL -f "^$prog" 2>/dev/null
rm -f "$out"
exit $fail
