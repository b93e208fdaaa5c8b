// `fewstep tokenize --tokenizer PATH "text"`: prints CLIP BPE ids (BOS and
// EOS included, no padding or truncation), separated by spaces.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace fewstep::cli {

/// Options of the tokenize command.
struct TokenizeOptions {
  std::string tokenizer;  ///< model folder, vocab.json + merges.txt folder, or .gz merges file
  std::string text;       ///< the prompt; may be empty
};

/// Adds the `tokenize` subcommand to `app`. Its callback throws
/// TokenizerError (a std::runtime_error, one line naming the path) when the
/// tokenizer cannot be loaded.
void register_tokenize_command(CLI::App& app) {
  auto opts = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the CLIP BPE token ids of a text (BOS and EOS included)");
  cmd->add_option("--tokenizer", opts->tokenizer,
                  "model folder, folder with vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz")
      ->required();
  cmd->add_option("text", opts->text, "text to tokenize")->required();
  cmd->callback([opts] {
    const Tokenizer tokenizer = Tokenizer::from_path(opts->tokenizer);
    const auto ids = tokenizer.encode(opts->text);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i == 0 ? "" : " ") << ids[i];
    std::cout << '\n';
  });
}

}  // namespace fewstep::cli
