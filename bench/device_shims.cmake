# Loaded by bench/run_device.sh through CMAKE_PROJECT_INCLUDE (right after
# project()). On the GPU device the header-only libraries come from
# FEWSTEP_THIRD_PARTY, where no CMake package defines nlohmann_json's
# imported target, which several targets link; this defines it.
if(FEWSTEP_THIRD_PARTY AND NOT TARGET nlohmann_json::nlohmann_json)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED GLOBAL)
  target_include_directories(nlohmann_json::nlohmann_json INTERFACE "${FEWSTEP_THIRD_PARTY}")
endif()
