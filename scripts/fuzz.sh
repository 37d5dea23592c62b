#!/usr/bin/env bash
# Runs one libFuzzer target (tests/fuzz) for a while, from the seeds in tests/fuzz/corpus/TARGET.
#   scripts/fuzz.sh --list                         the targets
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer args] build (clang, ASan+UBSan, build-address/) and run
# New inputs go to build-address/corpus/TARGET (the repository's seeds stay as they are); a crash
# is written to build-address/crashes/TARGET-* and the script exits non-zero. Turn each crash into a
# unit test of the code it found, then fix it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
targets=(json_field checkpoint mask_plan token_store token_store_verified)
if [ "${1:-}" = --list ]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi
if [ $# -lt 2 ]; then
  echo "usage: scripts/fuzz.sh --list | TARGET SECONDS [libFuzzer arguments]" >&2
  exit 2
fi
target=$1 seconds=$2
shift 2
if ! printf '%s\n' "${targets[@]}" | grep -qx "$target"; then
  echo "scripts/fuzz.sh: unknown target '$target'; known: ${targets[*]}" >&2
  exit 2
fi
command -v clang++ >/dev/null || { echo "scripts/fuzz.sh: needs clang (apt-get install clang)" >&2; exit 2; }
# The address build of scripts/sanitize.sh is the fuzzing build (with clang it carries the coverage
# instrumentation and the targets): build only this target there.
build=${BUILD_DIR:-$root/build-address}
if [ "$target" = token_store ]; then
  # The in-process reader links libhdf5 1.14.6 (scripts/hdf5_newer.sh) in its own address build:
  # Debian 12's 1.10.8 crashes on corrupt files by itself (tests/fuzz/hdf5_crashes), which would
  # stop this target on libhdf5's bugs instead of ours. token_store_verified keeps the system's.
  build=${BUILD_DIR:-$root/build-fuzz-hdf5}
  hdf5=$("$root/scripts/hdf5_newer.sh")
  export SANITIZE_CMAKE_ARGS="-DHDF5_ROOT=$hdf5 -DHDF5_DIR=$hdf5/cmake"
fi
BUILD_DIR=$build BUILD_TARGETS=fuzz_$target "$root/scripts/sanitize.sh" address --build-only
if [ "$target" = token_store ] && [[ $(ldd "$build/tests/fuzz/fuzz_token_store") != *"$hdf5/lib/libhdf5"* ]]; then
  echo "scripts/fuzz.sh: fuzz_token_store is not linked against $hdf5 (see $build/CMakeCache.txt)" >&2
  exit 1
fi
corpus=$build/corpus/$target crashes=$build/crashes
mkdir -p "$corpus" "$crashes"
seeds=$root/tests/fuzz/corpus/${target%_verified}  # the verified reader starts from the same stores
cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
export ASAN_OPTIONS="detect_leaks=0:suppressions=$root/scripts/sanitizers/asan.supp:${ASAN_OPTIONS:-}"  # leaks: sanitize.sh's job
if [ "${target%_verified}" = token_store ]; then
  # libhdf5 (1.10 and 1.14) allocates what a corrupt object header declares (2 GiB, 16 GiB and
  # more) inside H5Fopen, before it checks the read against the file's end and fails cleanly, so
  # no check of ours can come first. Allocations over 2 GiB (libFuzzer's malloc limit, the
  # -rss_limit_mb below) fail here instead, as on a machine without that memory, and HDF5 reports
  # that as an error like any other.
  ASAN_OPTIONS="allocator_may_return_null=1:max_allocation_size_mb=2048:$ASAN_OPTIONS"
fi
if [ "$target" = token_store ]; then
  # libhdf5 (1.10.8, 1.14.6 and h5py's 2.0.0 alike) follows a corrupt local-heap free list while
  # allocating without end, inside H5Lexists on the root group
  # (corpus/token_store/regression_hdf5_local_heap_loop): in this process no check can come first.
  # The product reads such a file in a verifying child with a memory budget. Here the run goes on
  # past out-of-memory inputs, each saved as an oom-* artifact and counted in the final line, and
  # stops on anything else (fork mode: one child fuzzes at a time, as without it).
  set -- -fork=1 -ignore_ooms=1 "$@"
fi
if [ "$target" = token_store_verified ]; then
  # The verifying children are forks of the fuzzer: libFuzzer's malloc limit would end a child
  # that asks HDF5 for a huge block with an "oom" artifact of its own (ASan's 2 GiB cap above
  # makes such allocations fail instead), and symbolizing each child's report (libhdf5's memory
  # errors, contained by design) would take seconds. Replay an artifact to see it symbolized.
  ASAN_OPTIONS="symbolize=0:$ASAN_OPTIONS"
  set -- -malloc_limit_mb=1000000 "$@"
fi
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
# An input that runs over 20 s or 2 GiB is a finding too (a hang, an allocation a file asked for).
"$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
  -artifact_prefix="$crashes/$target-" "$@" "$corpus"
