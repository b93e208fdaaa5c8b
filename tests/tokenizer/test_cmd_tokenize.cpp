// The `tokenize` subcommand: parses its flags, prints ids, reports bad paths.
#include <gtest/gtest.h>

#include "tests/test_env.h"

#include <CLI/CLI.hpp>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

namespace fewstep::cli {
void register_tokenize_command(CLI::App& app);
}

namespace fs = std::filesystem;

namespace {

/// Runs `fewstep tokenize --tokenizer PATH TEXT` in-process; returns stdout.
std::string run_tokenize(const std::string& path, const std::string& text) {
  CLI::App app{"fewstep"};
  fewstep::cli::register_tokenize_command(app);
  std::vector<std::string> args{"fewstep", "tokenize", "--tokenizer", path, text};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::ostringstream captured;
  auto* old = std::cout.rdbuf(captured.rdbuf());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  return captured.str();
}

fs::path hand_folder() {
  const fs::path dir = fs::temp_directory_path() / ("fewstep_tok_cli_" + std::to_string(getpid()));
  fs::create_directories(dir);
  // Merges: "a t</w>" (rank 0), "c at</w>" (rank 1): "cat" -> c at</w> -> cat</w> = 5.
  std::ofstream(dir / "vocab.json") << R"({"<|startoftext|>": 7, "<|endoftext|>": 8, "c": 0, "a": 1,
      "t</w>": 2, "at</w>": 3, "a</w>": 4, "cat</w>": 5})";
  std::ofstream(dir / "merges.txt") << "#version: 0.2\na t</w>\nc at</w>\n";
  return dir;
}

}  // namespace

TEST(CmdTokenize, PrintsIdsWithBosEos) {
  const auto dir = hand_folder();
  EXPECT_EQ(run_tokenize(dir.string(), "Cat a"), "7 5 4 8\n");
  EXPECT_EQ(run_tokenize(dir.string(), ""), "7 8\n");
}

TEST(CmdTokenize, ClipExample) {
  const fs::path gz = fs::path(FEWSTEP_SHARED_DATA_DIR) / "clip" / "bpe_simple_vocab_16e6.txt.gz";
  FEWSTEP_NEED_SHARED_DATA(fs::exists(gz), gz);
  EXPECT_EQ(run_tokenize(gz.string(), "a photo of a cat"), "49406 320 1125 539 320 2368 49407\n");
}

TEST(CmdTokenize, BadPathIsTokenizerErrorNamingIt) {
  const std::string bad = "/nonexistent/fewstep/tokenizer";
  try {
    run_tokenize(bad, "x");
    FAIL() << "expected an error";
  } catch (const fewstep::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}
