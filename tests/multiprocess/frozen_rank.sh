#!/usr/bin/env bash
# Usage: frozen_rank.sh MPIRUN PROGRAM DEADLINE_S stop|kill [REPEATS] [ring|backward]
# Three ranks exchange around a ring (bare exchanges, or ring attention's backward through
# ContextParallel); rank 1 stops (SIGSTOP) or kills (SIGKILL) itself midway.
# Passes when, in every repeat, the job ends within DEADLINE + 10 s with the right exit code and
# no rank process is left:
#   stop: 5, the survivors' TimeoutError (their wait passed the deadline; the job is aborted with
#         that code, which also ends the stopped rank);
#   kill: non-zero (Open MPI: 137, the killed rank's signal): the launcher sees the dead process
#         and ends the job itself, its survivors by SIGTERM before their deadline.
# Only the processes this test started are touched: the ranks' ids, written by the ranks.
set -u
mpirun=$1 prog=$2 deadline=${3:-3} mode=${4:-stop} repeats=${5:-1} place=${6:-ring}
fail=0
work=$(mktemp -d)
cleanup() {
  for f in "$work"/pids*/rank*; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
for ((i = 1; i <= repeats; i++)); do
  pids=$work/pids$i
  mkdir -p "$pids"
  start=$(date +%s%3N)
  timeout --signal=KILL 120 "$mpirun" --oversubscribe --bind-to none -np 3 "$prog" "$deadline" "$mode" "$pids" "$place" \
    >"$work/out" 2>&1
  rc=$?
  elapsed_ms=$(( $(date +%s%3N) - start ))
  echo "frozen_rank ($mode, $place, run $i): exit code $rc after $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000))) s (deadline $deadline s)"
  bad=0
  case "$mode" in
    stop) [ "$rc" -eq 5 ] || { echo "FAIL: exit code $rc, expected 5 (TimeoutError)"; bad=1; } ;;
    kill) [ "$rc" -ne 0 ] || { echo "FAIL: exit code 0, expected non-zero from mpirun"; bad=1; } ;;
  esac
  (( elapsed_ms >= 120000 )) && echo "FAIL: the job hung and was killed by the test's own 120 s limit"
  if (( elapsed_ms > (${deadline%.*} + 10) * 1000 )); then echo "FAIL: took longer than deadline + 10 s"; bad=1; fi
  n=$(ls "$pids" | wc -l)
  [ "$n" -eq 3 ] || { echo "FAIL: $n of 3 ranks started"; bad=1; }
  sleep 0.5
  for f in "$pids"/rank*; do
    pid=$(cat "$f")
    # Alive means any state but zombie (a dead child no init process has reaped yet).
    state=$(ps -o stat= -p "$pid" 2>/dev/null)
    if [ -n "$state" ] && [ "${state:0:1}" != Z ]; then
      echo "FAIL: $(basename "$f") (pid $pid, state $state) outlived the job"; bad=1
    fi
  done
  if [ $bad -ne 0 ]; then cat "$work/out"; fail=1; fi
done
[ $fail -eq 0 ] && echo "frozen_rank ($mode, $place): $repeats of $repeats runs ended in time with the right exit code"
exit $fail
