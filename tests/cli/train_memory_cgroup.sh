#!/usr/bin/env bash
# `longhaul train` inside a memory cgroup (what Slurm's task/cgroup, Docker and Kubernetes give a
# job) that its heaviest step does not fit. Linux overcommits, so no allocation fails there: the
# kernel's OOM killer ends the process (SIGKILL, exit 137), which is what a run without the
# preflight and without the steps' ceiling gets. The preflight runs that step under each process's
# share of the cgroup's headroom and stops the run before step 1 with exit code 7, naming the step
# and the cgroup; without the preflight, step 1 runs under the same share and stops the run with
# exit code 7, naming step 1 and the cgroup. The same step in micro-batches fits and trains. Needs root and a writable cgroup memory hierarchy (v1, or v2 with the memory
# controller delegated); otherwise skipped (exit 77) with the reason.
set -u
longhaul=$1
skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "not root: cannot make a memory cgroup"
# Our memory cgroup's directory: v1's memory hierarchy, else the unified one (v2).
if [ -w /sys/fs/cgroup/memory ]; then
  own=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}memory\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p' /proc/self/cgroup | head -1)
  base=/sys/fs/cgroup/memory; limit_file=memory.limit_in_bytes
elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  own=$(sed -n 's/^0::\(.*\)$/\1/p' /proc/self/cgroup)
  base=/sys/fs/cgroup; limit_file=memory.max
else
  skip "no writable cgroup memory hierarchy at /sys/fs/cgroup"
fi
cg=
for parent in "$base$own" "$base"; do  # beside our own cgroup's processes if we may, else at the top
  if mkdir "$parent/longhaul_test_$$" 2>/dev/null; then
    if [ -e "$parent/longhaul_test_$$/$limit_file" ]; then cg=$parent/longhaul_test_$$; break; fi
    rmdir "$parent/longhaul_test_$$"
  fi
done
[ -n "$cg" ] || skip "cannot make a memory cgroup under $base$own or $base (read-only, or the memory controller not delegated)"
dir=$(mktemp -d)
trap 'rmdir "$cg" 2>/dev/null; rm -rf "$dir"' EXIT
fail() { tail -n 5 "$dir"/*.out; echo "FAIL: $*"; exit 1; }
echo $((1024 << 20)) > "$cg/$limit_file" || skip "cannot set $cg/$limit_file"
# 32768 tokens per step at width 128 with 4096-token sequences: the step adds about 1.1 GiB (peak
# 1.5 GiB resident); in 8 micro-batches about 190 MiB (peak 560 MiB).
args=(train --steps 1 --tokens-per-step 32768 --task-tokens 1048576 --dim 128 --heads 4 --kv-heads 4 --min-log2 4
      --max-log2 12 --eval-docs 1)
run() {  # run NAME [extra args]: the run inside the cgroup, its output in $dir/NAME.out; returns its exit code
  local name=$1
  shift
  sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cg" "$longhaul" "${args[@]}" --workdir "$dir/$name" "$@" \
    > "$dir/$name.out" 2>&1
}
run checked
rc=$?
[ "$rc" -eq 7 ] || fail "exit $rc with the preflight in a 1 GiB cgroup, expected 7 (out of memory)"
grep -qF "ran out of memory on rank 0, before any training step" "$dir/checked.out" || fail "the error does not name the step"
grep -qE "the preflight ran with each process held to [0-9.]+ [MG]iB: [0-9.]+ [MG]iB available \(the memory cgroup [^ ]*longhaul_test_$$: limit 1.00 GiB" \
  "$dir/checked.out" || fail "the error does not name the cgroup's limit"
grep -q "^step " "$dir/checked.out" && fail "a training step ran before the preflight stopped the run"
run unchecked --no-preflight
rc=$?
[ "$rc" -eq 7 ] || fail "exit $rc without the preflight, expected 7 (out of memory) from step 1's ceiling"
grep -qE "train: step 1 ran out of memory on rank 0 .*; each process might add [0-9.]+ [MG]iB to the [0-9.]+ [MG]iB it held: [0-9.]+ [MG]iB available \(the memory cgroup [^ ]*longhaul_test_$$: limit 1.00 GiB" \
  "$dir/unchecked.out" || fail "step 1's error does not name the step and the cgroup's limit"
grep -qF "no checkpoint was written" "$dir/unchecked.out" || fail "step 1's error does not say that no checkpoint stands"
run unguarded --no-preflight --no-host-ceiling
rc=$?
[ "$rc" -eq 137 ] || fail "exit $rc without the preflight and the ceiling, expected 137 (the OOM killer's SIGKILL): the limit did not bind"
run micro --micro-batches 8
rc=$?
[ "$rc" -eq 0 ] || fail "exit $rc in 8 micro-batches, expected 0"
grep -qE "^train: preflight: 4096-token sequences at cp 1 \(8 per step, 8 micro-batches\): .* available on the host before it, each process held to" \
  "$dir/micro.out" || fail "no preflight line with the ceiling"
grep -q "^train: 1 steps" "$dir/micro.out" || fail "the run in micro-batches did not train"
echo "train_memory_cgroup: ok ($cg)"
