#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every CTest suite (cpu, mpi;
# gpu tests report SKIPPED without a GPU). Extra arguments go to ctest, e.g. -L cpu.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "${BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" "$@"
