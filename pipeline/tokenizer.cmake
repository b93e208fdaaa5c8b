# fewstep_tokenizer: CLIP byte-level BPE, no torch. Included by pipeline/CMakeLists.txt.
# Needs RE2 (pattern with \p{L}/\p{N}), zlib (the .gz merges file) and nlohmann_json.
# ICU's common library, when found, gives Python's full Unicode lower-casing;
# otherwise the C library's simple mapping in the C.UTF-8 locale is used.
add_library(fewstep_tokenizer STATIC "${CMAKE_CURRENT_LIST_DIR}/tokenizer.cpp")
target_include_directories(fewstep_tokenizer PUBLIC "${PROJECT_SOURCE_DIR}")
target_link_libraries(fewstep_tokenizer
  PUBLIC  $<$<TARGET_EXISTS:nlohmann_json::nlohmann_json>:nlohmann_json::nlohmann_json>
  PRIVATE PkgConfig::RE2 ZLIB::ZLIB fewstep_warnings)
find_package(ICU COMPONENTS uc)
if(ICU_FOUND)
  target_link_libraries(fewstep_tokenizer PRIVATE ICU::uc)
  target_compile_definitions(fewstep_tokenizer PUBLIC FEWSTEP_TOKENIZER_ICU=1)
else()
  message(STATUS "fewstep: ICU not found, the tokenizer lower-cases with the C library's simple mapping")
  target_compile_definitions(fewstep_tokenizer PUBLIC FEWSTEP_TOKENIZER_ICU=0)
endif()
