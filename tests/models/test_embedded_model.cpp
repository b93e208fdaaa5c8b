// The embedded emoji model: the C++ tokenizer reproduces the training
// pipeline's ids for every caption; generation is deterministic; and the
// prompt reaches the image: "red heart" and "blue heart" are drawn in the
// colours their Noto training images have (red: R far above B; blue: B far
// above R), judged on the foreground (pixels that are not near-white
// background).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

const fs::path kEmoji = fs::path(FEWSTEP_MODELS_DIR) / "emoji";

TEST(EmbeddedModel, TokenizerMatchesTrainingIdsForEveryCaption) {
  const fs::path expected = kEmoji / "tokenizer_expected_ids.json";
  ASSERT_TRUE(fs::exists(expected)) << "the repository holds " << expected;
  Tokenizer tok =
      Tokenizer::from_vocab_merges(kEmoji / "tokenizer" / "vocab.json", kEmoji / "tokenizer" / "merges.txt");
  std::ifstream in(expected);
  nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_GT(j.size(), 1000u);
  size_t mismatches = 0;
  for (const auto& [caption, ids] : j.items()) {
    std::vector<int64_t> want = ids.get<std::vector<int64_t>>();
    std::vector<int64_t> got = tok.encode(caption);
    if (got != want && ++mismatches <= 5) ADD_FAILURE() << "caption '" << caption << "'";
  }
  EXPECT_EQ(mismatches, 0u) << "of " << j.size() << " captions";
}

TEST(EmbeddedModel, GenerationIsDeterministicFiniteAndNotConstant) {
  ASSERT_TRUE(fs::exists(kEmoji / "model.json")) << "the repository holds models/emoji/model.json";
  RuntimeOptions rt;
  auto p = Pipeline::load(kEmoji.string(), rt);
  const ModelManifest& m = p->manifest();
  GenerateRequest r;
  r.sampler = m.defaults.sampler;
  r.steps = m.defaults.steps;
  r.cfg_scale = m.defaults.cfg_scale;
  r.width = m.defaults.width;
  r.height = m.defaults.height;
  r.seed = 42;
  Conditioning c = p->encode("red apple", "");
  GenerateResult a = p->generate(c, r), b = p->generate(c, r);
  EXPECT_TRUE(at::equal(a.latents, b.latents));
  EXPECT_EQ(a.image.pixels, b.image.pixels);
  EXPECT_TRUE(at::isfinite(a.latents).all().item<bool>());
  const auto [lo, hi] = std::minmax_element(a.image.pixels.begin(), a.image.pixels.end());
  EXPECT_GT(*hi - *lo, 10) << "the image is (nearly) constant";
}

/// Mean R, G, B (0-255) of the pixels with any channel below 200, the
/// foreground on the training images' white background; fraction of such
/// pixels in [3].
std::array<double, 4> foreground_colour(const Image& img) {
  std::array<double, 4> sum = {0, 0, 0, 0};
  for (size_t i = 0; i + 2 < img.pixels.size(); i += 3) {
    const uint8_t r = img.pixels[i], g = img.pixels[i + 1], b = img.pixels[i + 2];
    if (r >= 200 && g >= 200 && b >= 200) continue;
    sum[0] += r, sum[1] += g, sum[2] += b, sum[3] += 1;
  }
  const double n = std::max(sum[3], 1.0);
  return {sum[0] / n, sum[1] / n, sum[2] / n, sum[3] / double(img.width * img.height)};
}

TEST(EmbeddedModel, HeartsHaveTheColourTheirPromptNames) {
  auto p = Pipeline::load(kEmoji.string(), RuntimeOptions{});
  const ModelManifest& m = p->manifest();
  GenerateRequest r = p->request_with_defaults("", std::nullopt, std::nullopt, std::nullopt, std::nullopt);
  const Conditioning red = p->encode("red heart", ""), blue = p->encode("blue heart", "");
  for (uint64_t seed : {0, 1}) {
    r.seed = seed;
    const auto rc = foreground_colour(p->generate(red, r).image);
    const auto bc = foreground_colour(p->generate(blue, r).image);
    EXPECT_GT(rc[3], 0.1) << "seed " << seed << ": red heart has almost no foreground";
    EXPECT_GT(bc[3], 0.1) << "seed " << seed << ": blue heart has almost no foreground";
    EXPECT_GT(rc[0], rc[2] + 60) << "seed " << seed << ": red heart RGB " << rc[0] << " " << rc[1] << " " << rc[2];
    EXPECT_GT(bc[2], bc[0] + 60) << "seed " << seed << ": blue heart RGB " << bc[0] << " " << bc[1] << " " << bc[2];
  }
}

}  // namespace
