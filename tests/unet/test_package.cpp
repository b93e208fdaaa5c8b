// model.json validation: every error names the file and the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
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

}  // namespace
