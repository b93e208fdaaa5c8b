# Exporter tests of the text encoders, VAE decoder, tokenizer files and LoRA merge
# (tools/export/{text_encoder,vae,tokenizer_files,lora}.py) against transformers,
# diffusers and peft on random weights at reduced width. Each exits 77 (skip) when an
# oracle is missing, and 1 (fail) instead when FEWSTEP_REQUIRE_ORACLES=1 (CI).
# Meant to be include()d from tests/export/CMakeLists.txt.
foreach(_t text_export vae_export tokenizer_files lora)
  add_test(NAME export.${_t}
           COMMAND "${FEWSTEP_PYTHON}" "${CMAKE_CURRENT_SOURCE_DIR}/test_${_t}.py"
                   "${FEWSTEP_SHARED_DATA}/clip/bpe_simple_vocab_16e6.txt.gz")
  set_tests_properties(export.${_t} PROPERTIES SKIP_RETURN_CODE 77 LABELS export TIMEOUT 300)
endforeach()
