# Compiler flags of the torch-free fuzz and sanitizer builds (included from the
# top-level CMakeLists.txt when FEWSTEP_FUZZ or FEWSTEP_SANITIZE is set).
#
#   -DFEWSTEP_SANITIZE=address,undefined   every target built with these sanitizers
#   -DFEWSTEP_FUZZ=ON                      the same (address,undefined unless
#                                          FEWSTEP_SANITIZE says otherwise), plus
#                                          libFuzzer's coverage instrumentation
#                                          and the fuzz/ targets; needs clang
#
# Every finding stops the program (-fno-sanitize-recover), so a ctest test or a
# fuzz run fails on it instead of printing a report and passing.

set(_fewstep_sanitize "${FEWSTEP_SANITIZE}")
if(FEWSTEP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "FEWSTEP_FUZZ needs clang's libFuzzer: configure a fresh build tree with "
                        "CC=clang-14 CXX=clang++-14 (Debian: apt-get install clang-14 libclang-rt-14-dev)")
  endif()
  if(NOT _fewstep_sanitize)
    set(_fewstep_sanitize address,undefined)
  endif()
endif()

if(_fewstep_sanitize)
  if(NOT _fewstep_sanitize MATCHES "^[a-z,-]+$")
    message(FATAL_ERROR "FEWSTEP_SANITIZE='${_fewstep_sanitize}': expected a comma list such as address,undefined")
  endif()
  add_compile_options(-fsanitize=${_fewstep_sanitize} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${_fewstep_sanitize})
endif()
if(FEWSTEP_FUZZ)
  # Coverage feedback for the fuzzer in every library; fuzz/ links libFuzzer's
  # main (-fsanitize=fuzzer) into its targets only.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
message(STATUS "fewstep: torch-free cores only (sanitizers: ${_fewstep_sanitize}; fuzz targets: ${FEWSTEP_FUZZ})")
