# Finds NVIDIA's cudnn-frontend headers (header-only C++ API of cuDNN's graph interface) as the
# PyPI package nvidia-cudnn-frontend installs them (site-packages/include/cudnn_frontend.h).
# CUDNN_FRONTEND_ROOT overrides. The library itself is the libcudnn.so.9 torch already loads
# (opened at run time, see attention/cuda/route_cudnn_band.cpp), so nothing is linked here.
# Sets CUDNN_FRONTEND_INCLUDE_DIR (or leaves it NOTFOUND) and CUDNN_FRONTEND_VERSION.
macro(longhaul_find_cudnn_frontend)
  set(_cfe_hints ${CUDNN_FRONTEND_ROOT})
  longhaul_python_hint(_cfe_hints "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  find_path(CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h HINTS ${_cfe_hints} PATH_SUFFIXES include NO_DEFAULT_PATH)
  if(CUDNN_FRONTEND_INCLUDE_DIR)
    file(STRINGS ${CUDNN_FRONTEND_INCLUDE_DIR}/cudnn_frontend_version.h _cfe_v REGEX "CUDNN_FRONTEND_(MAJOR|MINOR|PATCH)_VERSION ")
    string(REGEX REPLACE ".*MAJOR_VERSION ([0-9]+).*MINOR_VERSION ([0-9]+).*PATCH_VERSION ([0-9]+).*" "\\1.\\2.\\3"
           CUDNN_FRONTEND_VERSION "${_cfe_v}")
    message(STATUS "longhaul: cudnn-frontend ${CUDNN_FRONTEND_VERSION}: ${CUDNN_FRONTEND_INCLUDE_DIR}")
  endif()
endmacro()
