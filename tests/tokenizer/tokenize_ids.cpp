// Test helper: `tokenize_ids PATH` reads UTF-8 lines from stdin and prints,
// for each, its ids (BOS/EOS included) separated by spaces, one line each.
// Used by test_tokenizer_oracle.py, independent of the fewstep CLI.
#include <iostream>
#include <string>

#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenize_ids TOKENIZER_PATH < lines\n";
    return 2;
  }
  try {
    const auto tokenizer = fewstep::Tokenizer::from_path(argv[1]);
    std::string line;
    while (std::getline(std::cin, line)) {
      const auto ids = tokenizer.encode(line);
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i == 0 ? "" : " ") << ids[i];
      std::cout << '\n';
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
