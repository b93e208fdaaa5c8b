# LibTorch, CUDA and the project's Python: everything the torch-side build
# needs and the torch-free fuzz/sanitizer builds do without (included from the
# top-level CMakeLists.txt when FEWSTEP_WITH_TORCH is on).

# --- LibTorch: from CMAKE_PREFIX_PATH, else from the project's .venv -------
if(NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  set(_fewstep_py "${CMAKE_SOURCE_DIR}/.venv/bin/python")
  if(NOT EXISTS "${_fewstep_py}")
    find_program(_fewstep_py NAMES python3 python)
  endif()
  execute_process(COMMAND "${_fewstep_py}" -c "import torch;print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(_torch_rc EQUAL 0 AND _torch_prefix)
    list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
  endif()
  set(FEWSTEP_PYTHON "${_fewstep_py}" CACHE FILEPATH "Python with torch, for export scripts and oracle tests")
endif()
if(NOT FEWSTEP_PYTHON)
  find_program(FEWSTEP_PYTHON NAMES python3 python)
endif()

if(FEWSTEP_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # CI builds sm_90 only; the device build passes -DCMAKE_CUDA_ARCHITECTURES="80;90".
    # The choice is kept in FEWSTEP_CUDA_ARCHS because torch's CMake clears
    # CMAKE_CUDA_ARCHITECTURES (see below).
    if(DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "")
      set(FEWSTEP_CUDA_ARCHS "${CMAKE_CUDA_ARCHITECTURES}" CACHE STRING "CUDA architectures" FORCE)
    elseif(NOT DEFINED FEWSTEP_CUDA_ARCHS)
      set(FEWSTEP_CUDA_ARCHS 90 CACHE STRING "CUDA architectures")
    endif()
    set(CMAKE_CUDA_ARCHITECTURES "${FEWSTEP_CUDA_ARCHS}")
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no C++20 flag for nvcc; kernels are C++17
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  else()
    message(STATUS "fewstep: nvcc not found, CUDA kernels disabled")
    set(FEWSTEP_CUDA OFF)
  endif()
endif()

# Torch's CMake (a CUDA LibTorch) probes for a GPU (none here) unless told
# the archs, with or without fewstep's kernels; it also clears
# CMAKE_CUDA_ARCHITECTURES, so keep ours and restore it.
set(_fewstep_cuda_archs "${FEWSTEP_CUDA_ARCHS}")
if("${_fewstep_cuda_archs}" STREQUAL "")
  set(_fewstep_cuda_archs 90)
endif()
if(FEWSTEP_CUDA)
  unset(CMAKE_CUDA_ARCHITECTURES)
  unset(CMAKE_CUDA_ARCHITECTURES CACHE)
endif()
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "")
  foreach(_a ${_fewstep_cuda_archs})
    string(REGEX REPLACE "^([0-9]+)([0-9])[a-z]?$" "\\1.\\2" _dotted "${_a}")
    list(APPEND TORCH_CUDA_ARCH_LIST "${_dotted}")
  endforeach()
endif()
find_package(Torch REQUIRED)
if(FEWSTEP_CUDA)
  set(CMAKE_CUDA_ARCHITECTURES "${_fewstep_cuda_archs}")
endif()

# PyPI's libtorch.so exports its own copy of std::filesystem (e.g. remove_all),
# which crashes when our code's calls bind to it. Putting libstdc++ first in
# every binary's DT_NEEDED list makes the dynamic linker bind to the system's.
add_link_options("LINKER:--no-as-needed" "-lstdc++")
