#!/usr/bin/env bash
# `longhaul train` on the embedded recall task, in one process: JSON step and accuracy rows; a run
# stopped after step 3 and resumed prints the uninterrupted run's losses bit for bit; SIGTERM
# leaves a checkpoint; a truncated checkpoint is refused with a clear error; --dtype bf16 and fp64
# train, a checkpoint of another --dtype, an unknown --dtype and (on a machine without one)
# --device cuda are refused by name; --micro-batches 4 gives the one-pass run's losses (fp64);
# --eval-data prints a held-out store's loss per length, and refuses a store the model cannot read.
set -euo pipefail
bin=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
common=(train --dim 32 --layers 1 --heads 2 --kv-heads 2 --min-log2 5 --max-log2 7 --tokens-per-step 512
      --eval-docs 4 --task-tokens 16384 --threads 1)
args=("${common[@]}" --steps 6)
# Step number, loss and its bits of every JSON step row; bits FILE RANGE: rows RANGE (sed's) of them.
rows() { grep -o '"step": [0-9]*, "loss": [^,]*, "loss_bits": "[^"]*"' "$1" || true; }
bits() { rows "$1" | sed -n "$2"; }
fail() { echo "FAIL: $*"; exit 1; }
count_rows() { [ "$(rows "$1" | wc -l)" = "$2" ] || { cat "$1"; fail "$1: expected $2 step rows with their loss bits"; }; }

# The whole run.
"$bin" "${args[@]}" --workdir "$dir/a" --json > "$dir/a.json"
grep -q '"step": 6' "$dir/a.json" || fail "no step 6 row"
grep -q '"eval": "recall", "step": 6, "context": 128, "accuracy"' "$dir/a.json" || fail "no accuracy row for context 128"
# Stopped after 3 steps, then resumed.
"$bin" "${args[@]}" --workdir "$dir/b" --stop-after 3 --json > "$dir/b1.json"
"$bin" "${args[@]}" --workdir "$dir/b" --resume --json > "$dir/b2.json"
count_rows "$dir/a.json" 6; count_rows "$dir/b1.json" 3; count_rows "$dir/b2.json" 3
[ "$(bits "$dir/a.json" '4,6p')" = "$(bits "$dir/b2.json" '1,3p')" ] || {
  bits "$dir/a.json" '4,6p'; bits "$dir/b2.json" '1,3p'; fail "resumed losses differ from the uninterrupted run"; }
[ "$(bits "$dir/a.json" '1,3p')" = "$(bits "$dir/b1.json" '1,3p')" ] || fail "the first 3 steps differ"
# Resuming a finished run: nothing to train is an error, and the checkpoint stays as it was.
sum=$(md5sum < "$dir/b/checkpoint.lhc")
if "$bin" "${args[@]}" --workdir "$dir/b" --resume > "$dir/b3.out" 2>&1; then fail "a finished run was resumed"; fi
grep -q "is at step 6, not before --steps 6: nothing to train" "$dir/b3.out" || { cat "$dir/b3.out"; fail "no clear error"; }
[ "$sum" = "$(md5sum < "$dir/b/checkpoint.lhc")" ] || fail "the refused resume rewrote the checkpoint"
# Resuming with another seed names the option that changed.
"$bin" "${args[@]}" --workdir "$dir/c" --stop-after 2 > /dev/null
if "$bin" "${args[@]}" --workdir "$dir/c" --resume --seed 99 > "$dir/c.out" 2>&1; then fail "a resume with another seed ran"; fi
grep -q "the saved state was made with seed 0, this sampler has seed 99" "$dir/c.out" || { cat "$dir/c.out"; fail "the changed seed is not named"; }

# SIGTERM: a checkpoint and exit status 128 + 15.
"$bin" "${common[@]}" --steps 100000 --workdir "$dir/c" --json > "$dir/c.json" 2> "$dir/c.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 2' "$dir/c.json" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ "$rc" = 143 ] || fail "SIGTERM: exit status $rc, expected 143"
[ -s "$dir/c/checkpoint.lhc" ] || fail "SIGTERM: no checkpoint"
ls "$dir/c" | grep -q tmp && fail "a temporary checkpoint was left behind"

# A truncated checkpoint is refused.
head -c 1000 "$dir/c/checkpoint.lhc" > "$dir/c/t.lhc"
if "$bin" "${args[@]}" --workdir "$dir/c" --checkpoint "$dir/c/t.lhc" --resume > "$dir/d.out" 2>&1; then
  fail "a truncated checkpoint was accepted"
fi
grep -q "truncated (1000 of" "$dir/d.out" || { cat "$dir/d.out"; fail "no clear error for a truncated checkpoint"; }
# --micro-batches: the same steps in 4 passes (fp64: the losses of the one-pass run to 1e-12,
# relative), each pass named in the JSON rows; a count that does not divide the step is refused.
"$bin" "${common[@]}" --steps 3 --dtype fp64 --workdir "$dir/mb1" --json > "$dir/mb1.json"
"$bin" "${common[@]}" --steps 3 --dtype fp64 --micro-batches 4 --workdir "$dir/mb4" --json > "$dir/mb4.json"
grep -q '"step": 3, .*"seq_len": 128, "cp": 1, "passes": 4,' "$dir/mb4.json" || { cat "$dir/mb4.json"; fail "no 4 passes at step 3"; }
losses() { grep -o '"loss_bits": "[^"]*"' "$1" | cut -d'"' -f4; }
python3 - "$(losses "$dir/mb1.json")" "$(losses "$dir/mb4.json")" <<'PY' || fail "--micro-batches 4 changed the losses"
import sys
a = [float.fromhex(x) for x in sys.argv[1].split()]
b = [float.fromhex(x) for x in sys.argv[2].split()]
assert len(a) == len(b) == 3, (a, b)
for x, y in zip(a, b):
    assert abs(x - y) <= 1e-12 * abs(x), (x, y)
PY
if "$bin" "${common[@]}" --steps 1 --micro-batches 3 --workdir "$dir/mb3" > "$dir/mb3.out" 2>&1; then fail "--micro-batches 3 was accepted"; fi
grep -q "micro-batches 3 must be a positive divisor of --tokens-per-step 512" "$dir/mb3.out" || { cat "$dir/mb3.out"; fail "--micro-batches 3 not named"; }
# --eval-data: a held-out store's loss per length every 3 steps and at the end (the first run's task
# store serves); a store of bytes (vocabulary 257) is refused by the task's model (67) before step 1,
# and a missing one is named.
"$bin" "${common[@]}" --steps 6 --workdir "$dir/val" --eval-data "$dir/a/recall_task.h5" --eval-every 3 --json \
  > "$dir/val.json"
for step in 3 6; do
  for context in 32 64 128; do
    grep -q "\"eval\": \"loss\", \"step\": $step, \"context\": $context, \"loss\": [34]\." "$dir/val.json" ||
      { cat "$dir/val.json"; fail "--eval-data: no loss row at step $step, context $context"; }
  done
done
printf 'a held-out document of bytes, longer than thirty-two of them\n' > "$dir/bytes.txt"
"$bin" prep "$dir/bytes.txt" -o "$dir/bytes.h5" -q > /dev/null
if "$bin" "${common[@]}" --steps 1 --workdir "$dir/val2" --eval-data "$dir/bytes.h5" > "$dir/val2.out" 2>&1; then
  fail "--eval-data with a wider vocabulary was accepted"; fi
grep -q "has a vocabulary of 257 tokens, the model's is 67" "$dir/val2.out" || { cat "$dir/val2.out"; fail "vocabulary not named"; }
grep -q "^step" "$dir/val2.out" && fail "--eval-data was refused only after a step"
if "$bin" "${common[@]}" --steps 1 --workdir "$dir/val3" --eval-data "$dir/none.h5" > "$dir/val3.out" 2>&1; then
  fail "a missing --eval-data store was accepted"; fi
grep -q "the evaluation store (--eval-data) '$dir/none.h5' is not a file" "$dir/val3.out" ||
  { cat "$dir/val3.out"; fail "the missing store is not named"; }
[ -e "$dir/val3/recall_task.h5" ] && fail "the task's store was written before the missing --eval-data was refused"
# --dtype: bf16 and fp64 train; fp16 is not offered; a checkpoint keeps its dtype.
for dt in bf16 fp64; do
  "$bin" "${common[@]}" --steps 3 --dtype $dt --workdir "$dir/$dt" --json > "$dir/$dt.json"
  grep -q '"step": 3, "loss": [0-9]' "$dir/$dt.json" || { cat "$dir/$dt.json"; fail "--dtype $dt: no finite loss at step 3"; }
done
if "$bin" "${common[@]}" --steps 1 --dtype fp16 --workdir "$dir/e" > "$dir/e.out" 2>&1; then fail "--dtype fp16 was accepted"; fi
grep -q "unknown dtype 'fp16', expected fp32, fp64 or bf16" "$dir/e.out" || { cat "$dir/e.out"; fail "no clear error for --dtype fp16"; }
if "$bin" "${common[@]}" --steps 8 --dtype fp64 --workdir "$dir/b" --resume > "$dir/f.out" 2>&1; then
  fail "an fp32 checkpoint was resumed with --dtype fp64"
fi
grep -q "dtype (--dtype) differs: the checkpoint has 'fp32', this run has 'fp64'" "$dir/f.out" ||
  { cat "$dir/f.out"; fail "no clear error for a checkpoint of another dtype"; }
# --device cuda where torch sees no CUDA device.
if "$bin" info --json | grep -q '"cuda_devices": 0'; then
  if "$bin" "${common[@]}" --steps 1 --device cuda --workdir "$dir/g" > "$dir/g.out" 2>&1; then
    fail "--device cuda was accepted without a CUDA device"
  fi
  grep -q "device cuda was asked for, but .*the devices here: only cpu" "$dir/g.out" ||
    { cat "$dir/g.out"; fail "no clear error for --device cuda without a device"; }
fi
echo "train_cli: ok"
