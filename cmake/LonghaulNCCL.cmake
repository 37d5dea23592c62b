# Finds the NCCL that torch itself loads: the nvidia-nccl wheel next to torch
# (site-packages/nvidia/nccl/{include,lib/libnccl.so.2}), so one NCCL lives in the process and
# header and library versions match. NCCL_ROOT overrides; the CUDA toolkit's copy is the fallback.
# Sets LONGHAUL_NCCL_FOUND, NCCL_INCLUDE_DIR, NCCL_LIBRARY, NCCL_VERSION.
macro(longhaul_find_nccl)
  set(_nccl_hints ${NCCL_ROOT})
  longhaul_python_hint(_nccl_hints
      "import os, torch; print(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), 'nvidia', 'nccl'))")
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH)
  # Fallback: a system NCCL (then it must be the one torch was linked with, or two get loaded).
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(LONGHAUL_NCCL_FOUND ON)
    file(STRINGS ${NCCL_INCLUDE_DIR}/nccl.h _nccl_v REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE ".*NCCL_MAJOR ([0-9]+).*NCCL_MINOR ([0-9]+).*NCCL_PATCH ([0-9]+).*" "\\1.\\2.\\3"
           NCCL_VERSION "${_nccl_v}")
    message(STATUS "longhaul: NCCL ${NCCL_VERSION}: ${NCCL_LIBRARY}")
  else()
    set(LONGHAUL_NCCL_FOUND OFF)
  endif()
endmacro()
