// The embedded emoji model: the C++ tokenizer reproduces the training
// pipeline's ids for every caption, and generation is deterministic and
// finishes with a finite, non-constant image.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"
#include "pipeline/tokenizer.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

const fs::path kEmoji = fs::path(FEWSTEP_MODELS_DIR) / "emoji";

TEST(EmbeddedModel, TokenizerMatchesTrainingIdsForEveryCaption) {
  const fs::path expected = kEmoji / "tokenizer_expected_ids.json";
  if (!fs::exists(expected) || !fs::exists(kEmoji / "tokenizer" / "vocab.json"))
    GTEST_SKIP() << "models/emoji has no tokenizer or expected ids yet";
  Tokenizer tok = Tokenizer::from_vocab_merges(kEmoji / "tokenizer" / "vocab.json", kEmoji / "tokenizer" / "merges.txt");
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
  if (!fs::exists(kEmoji / "model.json")) GTEST_SKIP() << "models/emoji/model.json is not exported yet";
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
  EXPECT_TRUE(at::equal(a.image, b.image));
  EXPECT_TRUE(at::isfinite(a.latents).all().item<bool>());
  at::Tensor img = a.image.to(at::kFloat);
  EXPECT_GT((img.max() - img.min()).item<float>(), 10.0f) << "the image is (nearly) constant";
}

}  // namespace
