#!/usr/bin/env bash
# `longhaul train` in a capped address space (ulimit -v): the memory preflight stops a run whose
# step cannot allocate before step 1, with exit code 7 (out of memory) and the step's shape named;
# with --no-preflight the same step fails at step 1, with the same code.
set -u
longhaul=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { cat "$dir"/*.out; echo "FAIL: $*"; exit 1; }
# 2^20 tokens per step in 128-token documents at width 32: the step alone holds about 4.3 GiB. The
# tool maps about 2.1 GiB of libraries with CUDA's, 3.5 GiB in all lets it start and no more.
args=(train --steps 1 --min-log2 7 --max-log2 7 --tokens-per-step 1048576 --dim 32 --layers 1 --heads 2
      --kv-heads 2 --eval-docs 0)
run() {  # run NAME [extra args]: the capped run, its output in $dir/NAME.out; returns its exit code
  local name=$1
  shift
  (ulimit -v $((7 * 512 * 1024)) && exec "$longhaul" "${args[@]}" --workdir "$dir/$name" "$@") > "$dir/$name.out" 2>&1
}
run checked
rc=$?
[ "$rc" -eq 7 ] || fail "exit $rc with the preflight, expected 7 (out of memory)"
grep -qF "out of memory: train: preflight: a step of 128-token sequences at cp 1 (8192 per step) ran out of memory on rank 0, before any training step" \
  "$dir/checked.out" || fail "the preflight's error does not name the step"
grep -q "^step " "$dir/checked.out" && fail "a training step ran before the preflight stopped the run"
run unchecked --no-preflight
rc=$?
[ "$rc" -eq 7 ] || fail "exit $rc without the preflight, expected 7 (out of memory)"
grep -qF "out of memory: train: step 1 ran out of memory on rank 0 (Trainer::step" "$dir/unchecked.out" ||
  fail "the step's error is not an out-of-memory one naming the step"
grep -q "preflight" "$dir/unchecked.out" && fail "--no-preflight still ran the preflight"
echo "train_out_of_memory: ok"
