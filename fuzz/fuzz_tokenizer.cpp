// libFuzzer target: the CLIP BPE tokenizer on arbitrary bytes (invalid UTF-8
// included). Inputs that start with '1' are tokenizer files: the rest is
// vocab.json's text, a NUL byte, then merges.txt's text
// (Tokenizer::from_vocab_merges_text); when they load, the tokenizer encodes
// the merges text as a prompt. Any other input is a prompt for the embedded
// model's tokenizer (models/emoji/tokenizer, read once at start-up).
// Only TokenizerError may come out, and every encoding must be
// BOS ... EOS with ids from the vocabulary, padded to the context length.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace {

std::unique_ptr<fewstep::Tokenizer> g_emoji;

void check_encoding(const fewstep::Tokenizer& tok, std::string_view prompt) {
  const auto ids = tok.encode(prompt);
  if (ids.size() < 2 || ids.front() != tok.bos_id() || ids.back() != tok.eos_id()) std::abort();
  for (int64_t id : ids)
    if (id < 0) std::abort();
  const auto padded = tok.encode_padded(prompt, 16, nullptr);
  if (padded.size() != 16 || padded.front() != tok.bos_id()) std::abort();
  const size_t kept = std::min<size_t>(ids.size(), 16);
  if (padded[kept - 1] != tok.eos_id()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_emoji = std::make_unique<fewstep::Tokenizer>(fewstep::Tokenizer::from_path(FEWSTEP_EMOJI_TOKENIZER));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (size > 0 && data[0] == '1') {
    const size_t nul = input.find('\0', 1);
    const std::string_view vocab = input.substr(1, nul == std::string_view::npos ? std::string_view::npos : nul - 1);
    const std::string_view merges = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
    try {
      const auto tok = fewstep::Tokenizer::from_vocab_merges_text(vocab, merges, "vocab.json", "merges.txt");
      check_encoding(tok, merges);
    } catch (const fewstep::TokenizerError&) {
    }
    return 0;
  }
  check_encoding(*g_emoji, input);
  return 0;
}
