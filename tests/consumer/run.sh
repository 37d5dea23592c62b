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
cmake -S "$src/tests/consumer" -B "$work/build" -G Ninja "${launcher[@]}" \
      -DCMAKE_PREFIX_PATH="$work/prefix;$torch_prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
