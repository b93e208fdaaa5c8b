// model.json from text (parse_manifest) with a virtual package folder: the
// torch-free manifest core that the fuzz target drives, and what load_manifest
// adds on disk. Built by the sanitizer builds too.
#include <gtest/gtest.h>

#include "tests/test_env.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "unet/package.h"

namespace fs = std::filesystem;
using fewstep::ModelError;
using fewstep::ModelManifest;
using nlohmann::json;

namespace {

const fs::path kDir = "/pkg";

/// A small latent, text-conditioned package's manifest.
json base_manifest() {
  return json::parse(R"({
    "format_version": 1, "name": "tiny", "kind": "latent", "sample_size": [8, 16], "in_channels": 4,
    "vae_scale_factor": 8,
    "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                  "beta_end": 0.012, "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 1},
    "unet": {"file": "unet.pt", "form": "blocks", "downsample_factor": 4},
    "text_encoder": {"file": "te.pt", "context_length": 77, "hidden_size": 32},
    "tokenizer": {"vocab": "tok/vocab.json", "merges": "tok/merges.txt"},
    "vae_decoder": {"file": "vae.pt", "scaling_factor": 0.5},
    "defaults": {"sampler": "euler", "steps": 4, "cfg_scale": 3.0}
  })");
}

/// The files of the virtual package folder.
const std::set<fs::path> kFiles = {kDir / "unet.pt", kDir / "te.pt", kDir / "tok/vocab.json", kDir / "tok/merges.txt",
                                   kDir / "vae.pt"};

ModelManifest parse(const json& j, const std::set<fs::path>& files = kFiles) {
  return fewstep::parse_manifest(j.dump(), kDir, "/pkg/model.json",
                                 [&](const fs::path& p) { return files.count(p) > 0; });
}

/// The error message of parsing `text` ("" when it parses).
std::string error_of(const std::string& text, const std::set<fs::path>& files = kFiles) {
  try {
    fewstep::parse_manifest(text, kDir, "/pkg/model.json", [&](const fs::path& p) { return files.count(p) > 0; });
  } catch (const ModelError& e) {
    return e.what();
  }
  return "";
}

std::string error_of(const json& j) { return error_of(j.dump()); }

}  // namespace

TEST(Manifest, ParsesFromTextWithVirtualFiles) {
  const ModelManifest m = parse(base_manifest());
  EXPECT_EQ(m.dir, kDir);
  EXPECT_EQ(m.name, "tiny");
  EXPECT_EQ(m.unet.file, "/pkg/unet.pt");
  EXPECT_EQ(m.unet.form, "blocks");
  ASSERT_TRUE(m.tokenizer);
  EXPECT_EQ(m.tokenizer->merges, "/pkg/tok/merges.txt");
  ASSERT_TRUE(m.vae_decoder);
  EXPECT_DOUBLE_EQ(m.vae_decoder->scaling_factor, 0.5);
  EXPECT_EQ(m.scheduler.steps_offset, 1);
  // Default image size: model-space size × vae_scale_factor, and the size
  // multiple is downsample_factor × vae_scale_factor.
  EXPECT_EQ(m.defaults.height, 8 * 8);
  EXPECT_EQ(m.defaults.width, 16 * 8);
  EXPECT_EQ(m.size_multiple(), 4 * 8);
}

TEST(Manifest, MissingVirtualFileIsNamed) {
  std::set<fs::path> files = kFiles;
  files.erase(kDir / "tok/merges.txt");
  EXPECT_EQ(error_of(base_manifest().dump(), files),
            "/pkg/model.json: field 'tokenizer.merges': file not found: /pkg/tok/merges.txt");
}

TEST(Manifest, BadTextIsOneLine) {
  EXPECT_EQ(error_of(std::string("{\"format_version\": 1,")), "/pkg/model.json: not valid JSON");
  EXPECT_EQ(error_of(std::string("[1, 2]")), "/pkg/model.json: expected a JSON object at the top level");
  EXPECT_EQ(error_of(std::string("\xff\xfe{}", 4)), "/pkg/model.json: not valid JSON");
}

TEST(Manifest, FieldErrorsNameTheField) {
  json j = base_manifest();
  j["unet"]["form"] = "graph";
  EXPECT_EQ(error_of(j), "/pkg/model.json: field 'unet.form': \"graph\" is not one of \"monolithic\", \"blocks\"");
  j = base_manifest();
  j["sample_size"] = {8};
  EXPECT_EQ(error_of(j), "/pkg/model.json: field 'sample_size': expected [H, W], two positive integers");
  j = base_manifest();
  j["scheduler"].erase("beta_schedule");
  EXPECT_EQ(error_of(j), "/pkg/model.json: field 'scheduler.beta_schedule': missing (required)");
}

// Found by reading with fuzz_manifest at hand (fuzz/corpus/manifest/
// overflow-sample-size.json): the default pixel size sample_size ×
// vae_scale_factor overflowed int64, which is undefined behaviour.
TEST(Manifest, OversizedProductsAreRefused) {
  json j = base_manifest();
  j["sample_size"] = {int64_t{1} << 62, 8};
  j["vae_scale_factor"] = 4;
  EXPECT_EQ(error_of(j), "/pkg/model.json: field 'sample_size': times vae_scale_factor does not fit a 64-bit integer");
  j = base_manifest();
  j["unet"]["downsample_factor"] = int64_t{1} << 40;
  j["sample_size"] = {int64_t{1} << 40, int64_t{1} << 40};
  j["vae_scale_factor"] = int64_t{1} << 30;
  EXPECT_EQ(error_of(j), "/pkg/model.json: field 'sample_size': times vae_scale_factor does not fit a 64-bit integer");
  // Sizes whose products fit are accepted, with exact products.
  j = base_manifest();
  j["sample_size"] = {int64_t{1} << 59, 8};
  j["vae_scale_factor"] = 8;
  const ModelManifest m = parse(j);
  EXPECT_EQ(m.defaults.height, int64_t{1} << 62);
  EXPECT_EQ(m.size_multiple(), 4 * 8);
}

TEST(Manifest, LoadManifestReadsTheFolder) {
  const fs::path dir = fewstep::test::scratch("manifest-pkg");
  fs::create_directories(dir / "tok");
  for (const char* f : {"unet.pt", "te.pt", "tok/vocab.json", "tok/merges.txt", "vae.pt"})
    std::ofstream(dir / f) << "x";
  std::ofstream(dir / "model.json") << base_manifest().dump();
  const ModelManifest m = fewstep::load_manifest(dir);
  EXPECT_EQ(m.dir, fs::absolute(dir));
  EXPECT_EQ(m.vae_decoder->file, (fs::absolute(dir) / "vae.pt").string());
  fs::remove(dir / "vae.pt");
  try {
    fewstep::load_manifest(dir);
    FAIL() << "a missing file must be refused";
  } catch (const ModelError& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "model.json").string() +
                                         ": field 'vae_decoder.file': file not found: " + (dir / "vae.pt").string());
  }
  fs::remove_all(dir);
}
