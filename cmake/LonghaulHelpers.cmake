# Helpers shared by the module CMakeLists.

# Finds LibTorch through the Python wheel unless Torch_DIR/CMAKE_PREFIX_PATH already point at one.
macro(longhaul_find_torch)
  if(NOT Torch_DIR)
    find_package(Python3 COMPONENTS Interpreter REQUIRED)
    execute_process(COMMAND ${Python3_EXECUTABLE} -c "import torch; print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "longhaul: cannot import torch with ${Python3_EXECUTABLE}; run scripts/setup.sh")
    endif()
    list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
  endif()
  # torch's config looks for the CUDA toolkit itself when the wheel has CUDA; our kernels target
  # Hopper (sm_90a) unless CMAKE_CUDA_ARCHITECTURES says otherwise.
  if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(ENV{TORCH_CUDA_ARCH_LIST} "9.0a")
  endif()
  find_package(Torch REQUIRED)
  if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
    set(LONGHAUL_TORCH_HAS_CUDA ON)
  else()
    set(LONGHAUL_TORCH_HAS_CUDA OFF)
  endif()
  # Imported target for the parts of torch we link (ATen, c10), without torch_python.
  if(NOT TARGET longhaul_torch)
    add_library(longhaul_torch INTERFACE)
    target_link_libraries(longhaul_torch INTERFACE ${TORCH_LIBRARIES})
    install(TARGETS longhaul_torch EXPORT longhaulTargets)
  endif()
endmacro()

# Fails configuration when an option was forced ON without its dependency.
function(longhaul_require option found what)
  if(${option} AND NOT ${found})
    message(FATAL_ERROR "longhaul: ${option}=ON needs ${what}, which was not found")
  endif()
endfunction()

# One library target per module: sources, public include roots, shared ATen precompiled header.
function(longhaul_module name)
  cmake_parse_arguments(M "" "" "SOURCES;LINK" ${ARGN})
  add_library(longhaul_${name} ${M_SOURCES})
  add_library(longhaul::${name} ALIAS longhaul_${name})
  target_include_directories(longhaul_${name} PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
      $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/longhaul>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(longhaul_${name} PUBLIC ${M_LINK})
  target_compile_options(longhaul_${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
  # Installed, the modules find each other beside themselves (a program linked with --as-needed
  # may not load a module it calls nothing of, e.g. core, that another module needs).
  set_target_properties(longhaul_${name} PROPERTIES EXPORT_NAME ${name} INSTALL_RPATH "$ORIGIN")
  longhaul_use_pch(longhaul_${name})
  install(TARGETS longhaul_${name} EXPORT longhaulTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
endfunction()

# ATen's headers dominate compile time: one precompiled header, built once and reused.
function(longhaul_use_pch target)
  if(NOT TARGET longhaul_pch)
    file(WRITE ${PROJECT_BINARY_DIR}/pch_stub.cpp "// anchor for the shared ATen precompiled header\n")
    add_library(longhaul_pch OBJECT ${PROJECT_BINARY_DIR}/pch_stub.cpp)
    target_link_libraries(longhaul_pch PRIVATE longhaul_torch)
    target_precompile_headers(longhaul_pch PRIVATE <ATen/ATen.h>)
  endif()
  target_precompile_headers(${target} REUSE_FROM longhaul_pch)
endfunction()

# An executable that shares the ATen precompiled header. The header was built -fPIC (for the
# libraries); GCC refuses a PCH built with other PIC/PIE settings, so executables compile -fPIC too.
function(longhaul_executable name)
  add_executable(${name} ${ARGN})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fPIC>)
  longhaul_use_pch(${name})
endfunction()

# Every test's environment. ctest -j runs tests side by side on few cores, each with an OpenMP team
# as wide as the machine: threads that spin at a barrier then hold the core that the other test's
# thread needs (on 2 cores the attention-vs-reference tests took 105-230 s instead of 55 s).
# Passive waiting hands the core over.
set(LONGHAUL_TEST_ENV OMP_WAIT_POLICY=PASSIVE)

# One CTest test per GoogleTest case of `target` (gtest_discover_tests), with LABEL (one:
# gtest_discover_tests flattens a list), TIMEOUT, an optional PREFIX for their names, and every
# test's environment. The environment must sit inside PROPERTIES: after DISCOVERY_TIMEOUT CMake
# ignores it without a word. GoogleTest's "[  SKIPPED ]" reports the case as skipped.
function(longhaul_discover_tests target)
  cmake_parse_arguments(T "" "PREFIX;LABEL;TIMEOUT" "" ${ARGN})
  gtest_discover_tests(${target} TEST_PREFIX "${T_PREFIX}"
                       PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT} ENVIRONMENT ${LONGHAUL_TEST_ENV}
                       DISCOVERY_TIMEOUT 60)
endfunction()

# One CTest test in one call: its COMMAND, LABELS (a list), TIMEOUT (default 300 s), ENVIRONMENT
# (a list), SERIAL for tests that must run alone (multi-process runs), and further test PROPERTIES.
function(longhaul_add_test name)
  cmake_parse_arguments(T "SERIAL" "TIMEOUT" "COMMAND;LABELS;ENVIRONMENT;PROPERTIES" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_test(NAME ${name} COMMAND ${T_COMMAND})
  set(env ${LONGHAUL_TEST_ENV} ${T_ENVIRONMENT})
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT} ENVIRONMENT "${env}")
  if(T_SERIAL)
    set_tests_properties(${name} PROPERTIES RUN_SERIAL ON)
  endif()
  if(T_PROPERTIES)
    set_tests_properties(${name} PROPERTIES ${T_PROPERTIES})
  endif()
endfunction()

# Appends to the list `hints` the existing path a line of Python prints (the interpreter torch is
# found with); nothing when there is no interpreter or the line fails.
function(longhaul_python_hint hints code)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_EXECUTABLE)
    execute_process(COMMAND ${Python3_EXECUTABLE} -c "${code}" OUTPUT_VARIABLE _out
                    OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc ERROR_QUIET)
    if(_rc EQUAL 0 AND EXISTS "${_out}")
      set(${hints} ${${hints}} ${_out} PARENT_SCOPE)
    endif()
  endif()
endfunction()
