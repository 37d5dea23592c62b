# shellcheck shell=bash
# Shared by the scripts a lent GPU machine runs (scripts/gpu_check.sh, scripts/gpu_python.sh):
# source it, then call what you need. Nothing here downloads anything.
#
#   lh_machine_info             the GPU, driver, torch, CUDA, NCCL, nvcc, kernel, cores (to stdout)
#   lh_torch_env                exports LH_PYTHON, LH_TORCH_LIB and LH_SITE, and puts torch's and the
#                               nvidia wheels' libraries (and /usr/local/cuda/lib64) on LD_LIBRARY_PATH
#   lh_unpack_debs DIR [DEST]   unpacks DIR/*.deb (Boost, GoogleTest: .gpu-bundle/debs, made by
#                               scripts/pack_gpu_bundle.sh) into DEST (default /tmp/lh-deps), sets
#                               LH_DEPS=DEST/usr (for CMAKE_PREFIX_PATH) and adds its library folder to
#                               LD_LIBRARY_PATH; fails when DIR holds no .deb (call it directly, not in $(...))
#   lh_boost_stub DEST          a CMake package "Boost" with an empty Boost::program_options, for a build of
#                               targets that do not link Boost (the Python extension) where Boost is absent;
#                               prints the folder for -DBoost_DIR
#   lh_budget SECONDS           starts a time budget of SECONDS from now, for lh_limit
#   lh_limit MAX [RESERVE]      a step's timeout: MAX seconds, or what is left of the budget less
#                               RESERVE (default 10), at least 1

lh_machine_info() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  "${LH_PYTHON:-python3}" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else None)' 2>&1
  nvcc --version 2>&1 | tail -1
  cmake --version 2>&1 | head -1
  uname -r
  nproc
}

lh_torch_env() {
  LH_PYTHON=${LH_PYTHON:-$(command -v python3)}
  LH_TORCH_LIB=$("$LH_PYTHON" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || return 1
  LH_SITE=$(dirname "$(dirname "$LH_TORCH_LIB")")
  local nvidia_libs
  nvidia_libs=$(find "$LH_SITE/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')
  export LH_PYTHON LH_TORCH_LIB LH_SITE
  export LD_LIBRARY_PATH="$LH_TORCH_LIB:${nvidia_libs}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
}

lh_unpack_debs() {
  local dir=$1 dest=${2:-/tmp/lh-deps} f n=0
  mkdir -p "$dest"
  for f in "$dir"/*.deb; do
    [ -e "$f" ] || continue
    dpkg -x "$f" "$dest" && n=$((n + 1))
  done
  [ "$n" -gt 0 ] || return 1
  export LH_DEPS=$dest/usr
  export LD_LIBRARY_PATH="$dest/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
}

lh_boost_stub() {
  local dest=$1
  mkdir -p "$dest"
  cat > "$dest/BoostConfig.cmake" <<'EOF'
# A stand-in for Boost (scripts/gpu_env.sh lh_boost_stub): the targets built with it link no Boost.
set(Boost_FOUND TRUE)
set(Boost_VERSION 1.74.0)
set(Boost_INCLUDE_DIRS "")
set(Boost_LIBRARIES "")
foreach(_c IN LISTS Boost_FIND_COMPONENTS)
  set(Boost_${_c}_FOUND TRUE)
  if(NOT TARGET Boost::${_c})
    add_library(Boost::${_c} INTERFACE IMPORTED)
  endif()
endforeach()
EOF
  cat > "$dest/BoostConfigVersion.cmake" <<'EOF'
set(PACKAGE_VERSION 1.74.0)
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
EOF
  echo "$dest"
}

lh_budget() { LH_BUDGET_END=$((SECONDS + $1)); }
lh_limit() {
  local l=$((${LH_BUDGET_END:?call lh_budget first} - SECONDS - ${2:-10}))
  ((l > $1)) && l=$1
  ((l < 1)) && l=1
  echo "$l"
}
