// model.json validation: every error names the file and the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "unet/package.h"

namespace fs = std::filesystem;
using fewstep::ModelError;
using nlohmann::json;

namespace {

/// A scratch copy of the tiny block-wise package whose model.json a test edits.
class PackageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fewstep-pkg-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::copy(fs::path(FEWSTEP_TEST_MODELS) / "tiny-blocks", dir_, fs::copy_options::recursive);
    std::ifstream in(dir_ / "model.json");
    manifest_ = json::parse(in);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write() { std::ofstream(dir_ / "model.json") << manifest_.dump(); }
  /// Loads and returns the error message ("" when loading succeeds).
  std::string error() {
    write();
    try {
      fewstep::load_manifest(dir_);
    } catch (const ModelError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
  json manifest_;
};

TEST_F(PackageTest, ValidPackageLoadsWithResolvedPaths) {
  write();
  auto m = fewstep::load_manifest(dir_);
  EXPECT_EQ(m.name, "tiny-blocks");
  EXPECT_EQ(m.unet.form, "blocks");
  EXPECT_EQ(m.sample_height, 16);
  EXPECT_EQ(m.in_channels, 3);
  EXPECT_TRUE(fs::path(m.unet.file).is_absolute());
  EXPECT_EQ(m.scheduler.num_train_timesteps, 1000);
  EXPECT_EQ(m.scheduler.beta_schedule, "scaled_linear");
  EXPECT_EQ(m.scheduler.steps_offset.value_or(-1), 1);
  ASSERT_TRUE(m.text_encoder.has_value());
  EXPECT_EQ(m.text_encoder->context_length, 16);
  EXPECT_EQ(m.size_multiple(), 2);
}

TEST_F(PackageTest, MissingFolderIsOneLine) {
  try {
    fewstep::load_manifest(dir_ / "nope");
    FAIL();
  } catch (const ModelError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model folder not found"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
}

TEST_F(PackageTest, MissingRequiredFieldNamesIt) {
  manifest_.erase("in_channels");
  std::string msg = error();
  EXPECT_NE(msg.find("model.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'in_channels'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST_F(PackageTest, WrongTypeNamesNestedField) {
  manifest_["scheduler"]["num_train_timesteps"] = "1000";
  std::string msg = error();
  EXPECT_NE(msg.find("'scheduler.num_train_timesteps'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
}

TEST_F(PackageTest, UnknownEnumValueListsChoices) {
  manifest_["unet"]["form"] = "block";
  std::string msg = error();
  EXPECT_NE(msg.find("'unet.form'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"blocks\""), std::string::npos) << msg;
}

TEST_F(PackageTest, MissingFileIsNamed) {
  fs::remove(dir_ / "unet.pt");
  std::string msg = error();
  EXPECT_NE(msg.find("'unet.file'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unet.pt"), std::string::npos) << msg;
}

TEST_F(PackageTest, BetaScheduleOrTrainedBetasRequired) {
  manifest_["scheduler"].erase("beta_schedule");
  EXPECT_NE(error().find("'scheduler.beta_schedule'"), std::string::npos);
  manifest_["scheduler"]["trained_betas"] = json::array();
  for (int i = 0; i < 1000; ++i) manifest_["scheduler"]["trained_betas"].push_back(0.01);
  EXPECT_EQ(error(), "");
  manifest_["scheduler"]["trained_betas"].erase(0);
  EXPECT_NE(error().find("has 999 entries"), std::string::npos);
}

TEST_F(PackageTest, OmittedSchedulerKeysTakeDiffusersDefaults) {
  manifest_["scheduler"] = {
      {"num_train_timesteps", 1000}, {"prediction_type", "v_prediction"}, {"beta_schedule", "linear"}};
  write();
  auto m = fewstep::load_manifest(dir_);
  EXPECT_DOUBLE_EQ(m.scheduler.beta_start, 0.0001);
  EXPECT_DOUBLE_EQ(m.scheduler.beta_end, 0.02);
  EXPECT_FALSE(m.scheduler.timestep_spacing.has_value());
  EXPECT_FALSE(m.scheduler.rescale_betas_zero_snr);
  EXPECT_EQ(m.scheduler.prediction_type, fewstep::PredictionType::v_prediction);
}

TEST_F(PackageTest, SizeMustFitDownsampleFactor) {
  manifest_["sample_size"] = {15, 16};
  EXPECT_NE(error().find("'sample_size'"), std::string::npos);
  manifest_["sample_size"] = {16};
  EXPECT_NE(error().find("expected [H, W]"), std::string::npos);
}

TEST_F(PackageTest, InvalidJsonIsReported) {
  std::ofstream(dir_ / "model.json") << "{ not json";
  try {
    fewstep::load_manifest(dir_);
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos);
  }
}

TEST_F(PackageTest, LatentModelNeedsVae) {
  manifest_["kind"] = "latent";
  EXPECT_NE(error().find("'vae_decoder'"), std::string::npos);
}

TEST(PackageContract, SdxlLcmAndTurboKeysParse) {
  const fs::path models(FEWSTEP_TEST_MODELS);
  auto sdxl = fewstep::load_manifest(models / "tiny-sdxl");
  EXPECT_EQ(sdxl.unet.addition_embed_type, "text_time");
  EXPECT_EQ(sdxl.unet.addition_time_embed_dim, 8);
  ASSERT_TRUE(sdxl.text_encoder_2 && sdxl.tokenizer_2);
  EXPECT_EQ(sdxl.text_encoder_2->pooled_size, 8);
  EXPECT_EQ(sdxl.text_encoder_2->field, "text_encoder_2");
  EXPECT_EQ(sdxl.tokenizer_2->pad_id.value_or(-1), 0);
  EXPECT_FALSE(sdxl.tokenizer->pad_id.has_value());
  EXPECT_EQ(sdxl.guidance.mode, "cfg");
  EXPECT_TRUE(sdxl.guidance.force_zeros_for_empty_prompt);
  auto lcm = fewstep::load_manifest(models / "tiny-lcm");
  EXPECT_EQ(lcm.guidance.mode, "embedded");
  EXPECT_EQ(lcm.unet.time_cond_proj_dim, 8);
  // A path may leave the package; it is resolved and normalised.
  EXPECT_EQ(fs::path(lcm.text_encoder->file), models / "tiny-blocks" / "text_encoder.pt");
  EXPECT_EQ(lcm.scheduler.other_keys.at("original_inference_steps"), "50");
  EXPECT_EQ(lcm.scheduler.set_alpha_to_one, std::optional<bool>(true));
  // Turbo: no CFG by default even though the manifest's defaults omit cfg_scale.
  auto turbo = fewstep::load_manifest(models / "tiny-turbo");
  EXPECT_EQ(turbo.guidance.mode, "none");
  EXPECT_EQ(turbo.defaults.cfg_scale, 1.0);
  EXPECT_TRUE(turbo.warnings.empty());
}

TEST_F(PackageTest, SchedulerKeysFewstepDoesNotImplementWarn) {
  manifest_["scheduler"]["_class_name"] = "PNDMScheduler";  // metadata: silent
  manifest_["scheduler"]["_diffusers_version"] = "0.6.0";
  manifest_["scheduler"]["skip_prk_steps"] = true;              // what fewstep does anyway: silent
  manifest_["scheduler"]["trained_betas"] = nullptr;            // null: silent
  manifest_["scheduler"]["interpolation_type"] = "log_linear";  // not implemented: warns
  manifest_["scheduler"]["solver_order"] = 3;                   // a sampler option: kept for the samplers
  manifest_["scheduler"]["set_alpha_to_one"] = false;
  write();
  auto m = fewstep::load_manifest(dir_);
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_NE(m.warnings[0].find("'scheduler.interpolation_type'"), std::string::npos) << m.warnings[0];
  EXPECT_NE(m.warnings[0].find("model.json"), std::string::npos) << m.warnings[0];
  EXPECT_EQ(m.warnings[0].find('\n'), std::string::npos);
  EXPECT_EQ(m.scheduler.other_keys, (std::map<std::string, std::string>{{"solver_order", "3"}}));
  EXPECT_EQ(m.scheduler.set_alpha_to_one, std::optional<bool>(false));
}

TEST_F(PackageTest, GuidanceAndConditioningKeysAreChecked) {
  manifest_["guidance"] = {{"mode", "embedded"}};
  EXPECT_NE(error().find("'guidance.mode': \"embedded\" needs unet.time_cond_proj_dim"), std::string::npos);
  manifest_["unet"]["time_cond_proj_dim"] = 2;
  EXPECT_NE(error().find("'unet.time_cond_proj_dim': must be at least 4"), std::string::npos);
  manifest_["unet"]["time_cond_proj_dim"] = 8;
  EXPECT_EQ(error(), "");
  manifest_["guidance"] = {{"mode", "lcm"}};
  EXPECT_NE(error().find("'guidance.mode': \"lcm\" is not one of"), std::string::npos);
  manifest_["guidance"] = {{"mode", "none"}};
  manifest_["defaults"]["cfg_scale"] = 7.5;
  EXPECT_NE(error().find("'defaults.cfg_scale': guidance.mode \"none\""), std::string::npos);
  manifest_["guidance"] = {{"mode", "cfg"}};
  manifest_["unet"]["addition_embed_type"] = "text_time";
  EXPECT_NE(error().find("'unet.addition_embed_type': \"text_time\" needs a pooled text embedding"), std::string::npos);
  manifest_["unet"].erase("addition_embed_type");
  manifest_["tokenizer"]["pad_id"] = -1;
  EXPECT_NE(error().find("'tokenizer.pad_id': must be >= 0"), std::string::npos);
  manifest_["tokenizer"].erase("pad_id");
  manifest_["text_encoder_2"] = manifest_["text_encoder"];
  EXPECT_NE(error().find("'tokenizer_2': required when text_encoder_2 is set"), std::string::npos);
  manifest_["tokenizer_2"] = manifest_["tokenizer"];
  manifest_["text_encoder_2"]["context_length"] = 8;
  EXPECT_NE(error().find("'text_encoder_2.context_length': must equal"), std::string::npos);
}

}  // namespace
