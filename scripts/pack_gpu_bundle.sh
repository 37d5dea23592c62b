#!/usr/bin/env bash
# Builds the CUDA configuration here (no MPI/HDF5: the GPU machine has neither) and packs what
# scripts/gpu_check.sh runs into .gpu-bundle/ (git-ignored), to travel with the device tool's
# `carry`: the longhaul tool, the gpu test binary, longhaul's shared libraries, the Boost library
# they link, and Debian packages (Boost, GoogleTest headers) for the fallback build there.
# torch, CUDA and NCCL come from the GPU machine's own torch 2.11 wheel (the same version as here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-gpu}
bundle=$root/.gpu-bundle
# Only what travels (the tool and the gpu tests), unless BUILD_TARGETS says otherwise.
BUILD_TARGETS=${BUILD_TARGETS:-longhaul longhaul_gpu_tests} BUILD_DIR=$build "$root/scripts/build.sh" \
  -DLONGHAUL_WITH_MPI=OFF -DLONGHAUL_WITH_HDF5=OFF "$@"
rm -rf "$bundle" && mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/debs"
cp "$build/cli/longhaul" "$build/tests/longhaul_gpu_tests" "$bundle/bin/"
find "$build" -name 'liblonghaul_*.so' -exec cp {} "$bundle/lib/" \;
cp "$(ldd "$build/cli/longhaul" | awk '/libboost_program_options/ {print $3}')" "$bundle/lib/"
git -C "$root" rev-parse HEAD > "$bundle/commit"
git -C "$root" status --short >> "$bundle/commit"
(cd "$bundle/debs" && apt-get download libboost1.74-dev libboost-program-options1.74-dev \
   libboost-program-options1.74.0 libgtest-dev >/dev/null 2>&1) || echo "pack: no .deb files (fallback build disabled)"
du -sh "$bundle"
