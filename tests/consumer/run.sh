#!/usr/bin/env bash
# Usage: run.sh BUILD_DIR SOURCE_DIR. Installs the build into a temporary prefix, then configures,
# builds and runs tests/consumer against it with find_package(longhaul).
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# The consumer uses the compiler and flags of the build it consumes (a sanitizer build's libraries
# need the sanitizer's runtime linked into the executable too).
cached() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
cmake -S "$src/tests/consumer" -B "$work/build" -G Ninja "${launcher[@]}" \
      -DCMAKE_CXX_COMPILER="$(cached CMAKE_CXX_COMPILER)" -DCMAKE_CXX_FLAGS="$(cached CMAKE_CXX_FLAGS)" \
      -DCMAKE_EXE_LINKER_FLAGS="$(cached CMAKE_EXE_LINKER_FLAGS)" \
      -DCMAKE_PREFIX_PATH="$work/prefix;$torch_prefix" >/dev/null
# The build's output is shown only when it fails (a header missing from the install names itself).
if ! cmake --build "$work/build" >"$work/build.log" 2>&1; then
  grep -E -A3 "error|Error" "$work/build.log" | head -40 >&2
  exit 1
fi
"$work/build/consumer"
