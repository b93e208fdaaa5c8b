// CLIP ViT-L/14 ids from OpenAI's merges file against the committed oracle
// ids (tools/oracles/clip_tokenizer_ids.py: transformers' CLIPTokenizer on the
// vocabulary derived from the same file). Skips when the shared data is absent.
#include <gtest/gtest.h>

#include "tests/test_env.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using fewstep::Tokenizer;

namespace {

/// $FEWSTEP_SHARED_DATA when set, else the folder configured at build time.
fs::path shared_data() {
  const char* env = std::getenv("FEWSTEP_SHARED_DATA");
  return env != nullptr && *env != '\0' ? fs::path(env) : fs::path(FEWSTEP_SHARED_DATA_DIR);
}

fs::path clip_gz() { return shared_data() / "clip" / "bpe_simple_vocab_16e6.txt.gz"; }

class ClipIds : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fs::exists(clip_gz())) tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_path(clip_gz()));
  }
  void SetUp() override { FEWSTEP_NEED_SHARED_DATA(tokenizer_ != nullptr, clip_gz()); }
  static std::unique_ptr<Tokenizer> tokenizer_;
};
std::unique_ptr<Tokenizer> ClipIds::tokenizer_;

}  // namespace

TEST_F(ClipIds, VocabularyLayout) {
  EXPECT_EQ(tokenizer_->vocab_size(), 49408);
  EXPECT_EQ(tokenizer_->bos_id(), 49406);
  EXPECT_EQ(tokenizer_->eos_id(), 49407);
  EXPECT_EQ(tokenizer_->token_id("!"), 0);        // first printable byte
  EXPECT_EQ(tokenizer_->token_id("a</w>"), 320);  // 256 + ('a' - '!')
}

TEST_F(ClipIds, IssueExample) {
  EXPECT_EQ(tokenizer_->encode("a photo of a cat"), (std::vector<int64_t>{49406, 320, 1125, 539, 320, 2368, 49407}));
}

TEST_F(ClipIds, MatchesOracleIds) {
  std::ifstream in(fs::path(FEWSTEP_TOKENIZER_TEST_DATA) / "clip_ids.json");
  ASSERT_TRUE(in) << "missing committed oracle file clip_ids.json";
  const auto doc = nlohmann::json::parse(in);
  const int64_t context_length = doc.at("context_length").get<int64_t>();
  const auto& cases = doc.at("cases");
  ASSERT_GE(cases.size(), 15u);
  int over_context = 0;
  for (const auto& c : cases) {
    const auto prompt = c.at("prompt").get<std::string>();
    const auto ids = c.at("ids").get<std::vector<int64_t>>();
    EXPECT_EQ(tokenizer_->encode(prompt), ids) << "prompt: " << prompt;
    std::vector<std::string> warnings;
    const auto padded =
        tokenizer_->encode_padded(prompt, context_length, [&](const std::string& m) { warnings.push_back(m); });
    EXPECT_EQ(padded, c.at("ids_77").get<std::vector<int64_t>>()) << "prompt: " << prompt;
    const auto over = static_cast<int64_t>(ids.size()) - context_length;
    ASSERT_EQ(warnings.size(), over > 0 ? 1u : 0u) << "prompt: " << prompt;
    if (over > 0) {
      ++over_context;
      EXPECT_NE(warnings[0].find("dropped the last " + std::to_string(over) + " tokens"), std::string::npos)
          << warnings[0];
    }
  }
  EXPECT_GE(over_context, 1) << "the oracle set must include a prompt over the context length";
}
