#!/usr/bin/env bash
# The tool's exit codes follow the kind of error (docs/errors.md), and messages are one line
# (no C++ backtrace): 0 success, 2 bad input (unknown option, invalid value), 2 for an unknown
# command (usage).
set -u
longhaul=$1
fail=0
expect() {  # expect CODE ARGS...: runs longhaul ARGS, checks the exit code and a one-line error
  local want=$1
  shift
  local err
  err=$("$longhaul" "$@" 2>&1 >/dev/null)
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: longhaul $* exited $rc, expected $want; stderr: $err"
    fail=1
  fi
  if echo "$err" | grep -q "frame #"; then
    echo "FAIL: longhaul $* printed a C++ backtrace: $err"
    fail=1
  fi
}
# expect_says CODE TEXT ARGS...: as expect, and stderr names TEXT (the option and what it expected).
expect_says() {
  local want=$1 text=$2
  shift 2
  local err
  err=$("$longhaul" "$@" 2>&1 >/dev/null)
  local rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -qF -- "$text" <<< "$err"; then
    echo "FAIL: longhaul $* exited $rc (expected $want) with stderr: $err (expected it to say: $text)"
    fail=1
  fi
}
# A CUDA device asked for where torch sees none: 3 (Unsupported: valid, not runnable here), the
# same for every subcommand.
if "$longhaul" info --json 2>/dev/null | grep -q '"cuda_devices": 0'; then
  expect_says 3 "needs a CUDA device" bench cp-gpu --tokens 4096
  expect_says 3 "needs a CUDA device" bench layer --device cuda
  expect_says 3 "needs CUDA tensors" bench kernel --backends cuda
  expect_says 3 "was asked for, but" train --device cuda --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
else
  echo "NOTE: a CUDA device is present: the no-device exit codes are not checked here"
fi
tmp="${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
mkdir -p "$tmp/in"
printf 'hello world\n' > "$tmp/in/a.txt"
expect 0 plan --tokens 4096 --ranks 2 --heads 4 --kv-heads 4 --head-dim 32 --gflops 50 --memory-gbps 5
expect 2 plan --no-such-option
expect 2 plan --tokens 4096 --ranks 2 --mask documents --gflops 50
expect 2 plan --tokens 4096 --ranks 2 --dtype int3 --gflops 50
expect 2 frobnicate
# A store on which libhdf5 itself crashes, opened with --verify-data: a named bad-input error (2)
# from the verifying child's crash, not a segfault of the trainer.
crash=$(cd "$(dirname "$0")/../fuzz/hdf5_crashes" && pwd)/hdf5_crash_sigsegv
expect 2 train --data "$crash" --verify-data --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
# The same by default (stores are verified once per file; a crashing one is never stamped).
expect 2 train --data "$crash" --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
expect 2 train --data "$crash" --verify-data --no-verify-data --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
if ! "$longhaul" train --data "$crash" --verify-data --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$" 2>&1 |
  grep -q "the HDF5 library crashed reading it in a child process"; then
  echo "FAIL: train --verify-data on a crashing store did not name the crash"
  fail=1
fi
# Values no run can use are named before any work (and a deadline past the clock's range is none).
expect_says 2 "--timeout nan: expected a number" info --timeout nan
expect_says 2 "--gflops nan: expected a number" plan --gflops nan
expect_says 2 "--fwd-tflops nan: expected a number" simulate --fwd-tflops nan
expect_says 2 "--timeout 0: expected a number of seconds > 0" info --timeout 0
expect 0 bench comm --local 2 --ops ring --min-bytes 1024 --max-bytes 1024 --iters 2 --timeout 1e10
expect_says 2 "--threads 5000: expected 0 (from the CPU affinity) to 1024" info --threads 5000
expect_says 2 "--threads -1: expected 0" info --threads -1
expect_says 2 "expected 0 < min <= max <= 2^30" bench comm --local 2 --max-bytes 9223372036854775807
expect_says 2 "--configs takes a positive number of ranks or auto, got 'foo'" bench dd-cp --configs foo --steps 1
expect_says 2 "simulate: --ranks 2048: expected 1 to 1024" simulate --ranks 2048
expect_says 2 "plan: --ranks 2048: expected 1 to 1024 and at most --tokens (1024)" plan --tokens 1024 --ranks 2048 --gflops 10
expect_says 2 "plan: --tokens 99999999999999999: expected 1 to 2^31" plan --tokens 99999999999999999 --gflops 10
expect_says 2 "expected full, causal, documents, causal_documents, causal_window or a family: full, causal" \
  plan --mask bogus --gflops 10
expect_says 2 "is also an input" prep "$tmp/in/a.txt" -o "$tmp/in/a.txt"
grep -q "hello world" "$tmp/in/a.txt" || { echo "FAIL: prep overwrote its input"; fail=1; }
expect_says 2 "the output's directory $tmp/nodir does not exist" prep "$tmp/in" -o "$tmp/nodir/x.h5"
expect_says 2 "is a directory, expected a file name" prep "$tmp/in/a.txt" -o "$tmp/in"
expect_says 2 "the output's directory $tmp/in/a.txt is not a directory (it is a file)" prep "$tmp/in" -o "$tmp/in/a.txt/x.h5"
expect_says 2 "the output /proc/x.h5 cannot be created: " prep "$tmp/in" -o /proc/x.h5
expect_says 2 "train: --lr -1: expected a number > 0" train --lr -1 --steps 1 --workdir "$tmp/w"
expect_says 2 "train: --rope-theta 0: expected a number > 1" train --rope-theta 0 --steps 1 --workdir "$tmp/w"
# Query heads that the key/value heads do not divide: the flags named, and the default said when it is one.
expect_says 2 "plan: --heads 4 is not a multiple of --kv-heads 8 (its default)" plan --heads 4 --gflops 10
expect_says 2 "simulate: --heads 4 is not a multiple of --kv-heads 8 (its default)" simulate --heads 4
expect_says 2 "train: --heads 4 is not a multiple of --kv-heads 3: every key/value head" \
  train --heads 4 --kv-heads 3 --steps 1 --workdir "$tmp/w"
expect_says 2 "plan: --heads 0 and --kv-heads 8: expected numbers >= 1" plan --heads 0 --gflops 10
expect_says 2 "simulate: --head-dim 0: expected a number >= 1" simulate --head-dim 0
expect_says 2 "train: --min-lr-ratio 2: expected a fraction" train --min-lr-ratio 2 --steps 1 --workdir "$tmp/w"
expect_says 2 "train: --log-every 0: expected a number >= 1" train --log-every 0 --steps 1 --workdir "$tmp/w"
expect_says 2 "the checkpoint's directory $tmp/nodir does not exist (--checkpoint)" \
  train --steps 1 --workdir "$tmp/w" --checkpoint "$tmp/nodir/ck.lhc"
expect_says 2 "is a directory, expected a file name (--checkpoint)" train --steps 1 --workdir "$tmp/w" --checkpoint "$tmp/in"
expect_says 2 "is a directory, expected a token store file" train --steps 1 --workdir "$tmp/w" --data "$tmp/in"
# A model that cannot be built is refused before the recall task's store is written.
expect_says 2 "model: dim 30 must be divisible by heads 4" train --dim 30 --steps 1 --workdir "$tmp/shape"
expect_says 2 "model: head dim 9 must be even" train --dim 36 --steps 1 --workdir "$tmp/shape"
expect_says 2 "DDSampler: tokens per step b = 100 must be a positive multiple of data-parallel size · 2^M = 1 · 512" \
  train --tokens-per-step 100 --steps 1 --workdir "$tmp/shape"
[ ! -e "$tmp/shape/recall_task.h5" ] || { echo "FAIL: train wrote the task before refusing the model"; fail=1; }
# Standard output that cannot be written (/dev/full: every write fails with ENOSPC, as on a full
# disk) is an error: the run goes on and says at once which line was lost, then exits 1.
expect_full() {  # expect_full TEXT ARGS...
  local text=$1
  shift
  local err
  err=$("$longhaul" "$@" 2>&1 >/dev/full)
  local rc=$?
  if [ "$rc" -ne 1 ] || ! grep -qF -- "$text" <<< "$err" || ! grep -q "standard output is incomplete" <<< "$err"; then
    echo "FAIL: longhaul $* > /dev/full exited $rc (expected 1) with stderr: $err (expected it to say: $text)"
    fail=1
  fi
}
if [ -w /dev/full ]; then
  expect_full "writing the standard output failed at the line of step 1 (No space left on device)" \
    train --steps 2 --eval-docs 1 --workdir "$tmp/full"
  [ -e "$tmp/full/checkpoint.lhc" ] || { echo "FAIL: the run whose output failed wrote no checkpoint"; fail=1; }
  expect_full "writing the standard output failed at the end of \`longhaul plan\`" plan --T 4096 --P 2
else
  echo "SKIPPED: the /dev/full checks (no writable /dev/full here)"
fi
rm -rf "$tmp" "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
[ $fail -eq 0 ] && echo "exit codes: ok"
exit $fail
