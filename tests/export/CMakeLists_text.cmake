# Exporter tests of the text encoders, VAE decoder, tokenizer files and LoRA merge
# (tools/export/{text_encoder,vae,tokenizer_files,lora}.py) against transformers,
# diffusers and peft on random weights at reduced width. Each exits 77 (skip) when an
# oracle is missing, and 1 (fail) instead under FEWSTEP_REQUIRE_ORACLES=1 (CI).
# Meant to be include()d from tests/export/CMakeLists.txt (fewstep_python_test comes
# from tests/CMakeLists.txt).
set(_clip_gz "${FEWSTEP_SHARED_DATA}/clip/bpe_simple_vocab_16e6.txt.gz")
foreach(_t text_export vae_export tokenizer_files lora)
  fewstep_python_test(${_t} export "${CMAKE_CURRENT_SOURCE_DIR}/test_${_t}.py" "${_clip_gz}")
endforeach()
# The oracle rule for these scripts: skipped with the oracle blocked, failed under
# FEWSTEP_REQUIRE_ORACLES=1 (tests/oracles/test_oracle_rule.py).
set(_here "${CMAKE_CURRENT_SOURCE_DIR}")
fewstep_python_test(oracle_rule_text export "${PROJECT_SOURCE_DIR}/tests/oracles/test_oracle_rule.py"
  "transformers=${_here}/test_text_export.py::${_clip_gz}"
  "diffusers=${_here}/test_vae_export.py"
  "transformers=${_here}/test_tokenizer_files.py::${_clip_gz}"
  "peft=${_here}/test_lora.py")
