#!/usr/bin/env bash
# Builds longhaul with a sanitizer into its own folder and runs the tests of the cpu and mpi labels
# under it.
#   scripts/sanitize.sh address   [ctest arguments]   AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/sanitize.sh undefined [ctest arguments]   UndefinedBehaviorSanitizer alone
#   scripts/sanitize.sh thread    [ctest arguments]   ThreadSanitizer on the threaded code: the local
#                                                     backend, the MPI progress engine and its lifetime,
#                                                     the collective checks, the prefetching loader,
#                                                     the CPU kernels' workers
#   scripts/sanitize.sh KIND --build-only             build, run nothing (BUILD_TARGETS selects targets)
# Extra arguments replace the default label selection, e.g. `scripts/sanitize.sh address -R Mask`.
# SANITIZE_CMAKE_ARGS adds configure arguments (scripts/fuzz.sh: a newer libhdf5 via HDF5_ROOT).
# The build: BUILD_DIR (default build-<kind>), RelWithDebInfo at -O1, no CUDA and no Python module
# (a sanitized extension would need the runtime preloaded into python). Only our code is
# instrumented; LibTorch, Open MPI and HDF5 are not, so the suppressions in
# scripts/sanitizers/ name third-party libraries only, each with its reason.
# With clang, the address build is also the fuzzing build (scripts/fuzz.sh): it adds libFuzzer's
# coverage instrumentation (-fsanitize=fuzzer-no-link, which changes no behaviour) and the fuzz
# targets, so on a 2-core machine the ATen-heavy sources are compiled with ASan once, not twice.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-}
compiler=()
if command -v clang++ >/dev/null; then compiler=(CC=clang CXX=clang++); fi
extra=()
case "$kind" in
  address)
    flags="-fsanitize=address,undefined"
    if [ ${#compiler[@]} -gt 0 ]; then
      flags="-fsanitize=fuzzer-no-link,address,undefined"
      extra=(-DLONGHAUL_BUILD_FUZZERS=ON)
    fi ;;
  undefined) flags="-fsanitize=undefined" ;;
  thread) flags="-fsanitize=thread" ;;
  *) echo "usage: scripts/sanitize.sh address|undefined|thread [--build-only | ctest arguments]" >&2; exit 2 ;;
esac
shift
"$root/scripts/setup.sh" >/dev/null
build=${BUILD_DIR:-$root/build-$kind}
flags="$flags -fno-omit-frame-pointer -fno-sanitize-recover=undefined -O1 -g"
link=${flags%% *}
link=${link/fuzzer-no-link,/}  # the coverage runtime comes with ASan; executables keep their own main
env "${compiler[@]}" BUILD_DIR="$build" "$root/scripts/build.sh" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS=$flags" "-DCMAKE_C_FLAGS=$flags" \
  "-DCMAKE_EXE_LINKER_FLAGS=$link" "-DCMAKE_SHARED_LINKER_FLAGS=$link" \
  -DLONGHAUL_WITH_CUDA=OFF -DLONGHAUL_WITH_NCCL=OFF -DLONGHAUL_WITH_PYTHON=OFF "${extra[@]}" ${SANITIZE_CMAKE_ARGS:-}
if [ "${1:-}" = --build-only ]; then exit 0; fi

supp=$root/scripts/sanitizers
# A finding fails the test (exit code 66 from the sanitizer, printed with the stack). A request
# ASan's or TSan's allocator cannot serve returns null, as glibc's does, instead of aborting: the
# tests of failed allocations (torch's CPU allocator turned into an out-of-memory error) then run
# here too.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66:detect_odr_violation=0:allocator_may_return_null=1:suppressions=$supp/asan.supp:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp:${UBSAN_OPTIONS:-}"
export TSAN_OPTIONS="exitcode=66:halt_on_error=0:second_deadlock_stack=1:allocator_may_return_null=1:suppressions=$supp/tsan.supp:${TSAN_OPTIONS:-}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ "$kind" = thread ]; then
  # The CPU kernels' OpenMP runtime (clang's libomp) is not instrumented: Archer, LLVM's OpenMP
  # tool, tells TSan about its barriers and task joins, and accesses made by uninstrumented
  # libraries themselves are not checked (their synchronisation is invisible to TSan).
  archer=$(clang++ -print-file-name=libarcher.so 2>/dev/null || true)
  [ -f "$archer" ] || archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | head -n 1 || true)
  [ -n "$archer" ] && export OMP_TOOL_LIBRARIES="$archer"
  export TSAN_OPTIONS="ignore_noninstrumented_modules=1:$TSAN_OPTIONS"
fi
if [ "$kind" = address ]; then  # Open MPI's components stay loaded so their leaks can be named
  cc -shared -fPIC -O1 -o "$build/keep_libraries_loaded.so" "$supp/keep_libraries_loaded.c"
  export LD_PRELOAD="$build/keep_libraries_loaded.so${LD_PRELOAD:+:$LD_PRELOAD}"
fi

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  if [ "$kind" = thread ]; then
    args=(-L "cpu|mpi" -R "Local|Mpi|Engine|Loader|Prefetch|Thread|Worker|Checked|CollectiveCount|mpi_comm|mpi_cp|mpi_world|mpi_rank")
  else
    args=(-L "cpu|mpi")
  fi
fi
cd "$build"
ctest --output-on-failure -j "$(nproc)" "${args[@]}"
