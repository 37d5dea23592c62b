# What the `longhaul` Python module (python/) needs: the Python headers of the interpreter torch
# was found with, torch's Python package (libtorch_python, which defines the casters for
# at::Tensor and the c10d::ProcessGroup class) and torch's pybind11 headers (torch/include).
# Sets LONGHAUL_PYTHON_FOUND, LONGHAUL_TORCH_PYTHON_LIBRARY, LONGHAUL_TORCH_PACKAGE_DIR and
# LONGHAUL_PYBIND11_DEFINES.
macro(longhaul_find_python_module)
  set(LONGHAUL_PYTHON_FOUND OFF)
  find_package(Python3 COMPONENTS Interpreter Development.Module QUIET)
  if(Python3_Development.Module_FOUND)
    execute_process(COMMAND ${Python3_EXECUTABLE} -c "import os, torch; print(os.path.dirname(torch.__file__))"
                    OUTPUT_VARIABLE LONGHAUL_TORCH_PACKAGE_DIR OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc
                    ERROR_QUIET)
    find_library(LONGHAUL_TORCH_PYTHON_LIBRARY torch_python HINTS ${LONGHAUL_TORCH_PACKAGE_DIR}/lib NO_DEFAULT_PATH)
    if(_rc EQUAL 0 AND LONGHAUL_TORCH_PYTHON_LIBRARY AND EXISTS ${LONGHAUL_TORCH_PACKAGE_DIR}/include/pybind11/pybind11.h)
      set(LONGHAUL_PYTHON_FOUND ON)
    endif()
  endif()
  # A ProcessGroup made by torch casts to C++ only if both modules share pybind11's internals,
  # whose key includes the compiler and library ABI. torch < 2.9 (pybind11 2.x) exports its
  # choice as torch._C._PYBIND11_*, and torch.utils.cpp_extension passes it on; pybind11 3
  # (torch >= 2.9) derives the key from the compiler itself, and torch no longer exports them.
  set(LONGHAUL_PYBIND11_DEFINES "")
  if(LONGHAUL_PYTHON_FOUND)
    execute_process(COMMAND ${Python3_EXECUTABLE} -c
        "import torch\nfor n in ('COMPILER_TYPE', 'STDLIB', 'BUILD_ABI'):\n    v = getattr(torch._C, '_PYBIND11_' + n, None)\n    if v: print(f'PYBIND11_{n}=\"{v}\"')"
        OUTPUT_VARIABLE _defs OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_defs)
      string(REPLACE "\n" ";" LONGHAUL_PYBIND11_DEFINES "${_defs}")
    endif()
  endif()
endmacro()
