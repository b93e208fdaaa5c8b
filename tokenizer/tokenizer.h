// fewstep tokenizer: CLIP's byte-level BPE (Radford et al. 2021, "Learning
// Transferable Visual Models From Natural Language Supervision"; the byte-level
// BPE of Sennrich et al. 2016 as adapted by GPT-2, Radford et al. 2019, §2.2).
// No torch dependency: ids are plain int64 vectors; the pipeline turns them
// into an `input_ids` tensor [B, L] int64 for the text encoder.
//
// encode(text):
//   1. clean_text: HTML-unescape twice, collapse whitespace, trim, lower-case
//      (ftfy's mojibake repair is out of scope and treated as identity);
//   2. split with CLIP's pre-tokenization pattern;
//   3. map each piece's UTF-8 bytes through the byte-to-unicode table, mark
//      the last symbol with `</w>`, apply merges by rank;
//   4. look the symbols up in the vocabulary; wrap in BOS/EOS.
//
// The same class serves real CLIP vocabularies (49,408 tokens) and the small
// vocabularies that tools/ trains in CLIP's format (issue 4).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fewstep {

/// Raised for unreadable or malformed tokenizer files and bad arguments.
/// The message is one line and names the file (or the argument).
struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Receives one-line warnings (truncation). The default writes
/// "warning: <message>\n" to stderr.
using WarningSink = std::function<void(const std::string&)>;

/// The default WarningSink: writes "warning: <message>" and a newline to stderr.
void stderr_warning_sink(const std::string& message);

/// CLIP's text clean-up, on UTF-8 text: HTML-unescape twice, replace every
/// run of Unicode whitespace (the characters Python's str.isspace accepts)
/// by one space, trim, then lower-case (Unicode simple lower-case mapping).
/// Recognised entities: &amp; &lt; &gt; &quot; &apos; &nbsp; and numeric
/// &#NNN; / &#xHH; (see tokenizer.cpp for the documented table; anything
/// else is left as written). Each byte that starts no valid UTF-8 sequence
/// becomes U+FFFD.
std::string clean_text(std::string_view text);

/// CLIP's byte-to-unicode table: byte b -> the UTF-8 encoding of a printable
/// code point (bytes that are printable Latin-1 map to themselves, the other
/// 68 to U+0100 + k in byte order). Exposed for tests and trainers.
const std::string& byte_to_unicode(uint8_t b);

/// A loaded BPE vocabulary: token -> id and merge pair -> rank.
class Tokenizer {
 public:
  /// Loads a tokenizer from `path`, which is one of:
  ///  - a model package folder: reads model.json's `tokenizer.vocab` and
  ///    `tokenizer.merges` (relative to the folder);
  ///  - a folder holding vocab.json and merges.txt;
  ///  - OpenAI's bpe_simple_vocab_16e6.txt.gz (any `.gz` file).
  /// Throws TokenizerError naming the path when it fits none of these, or
  /// when model.json has `"tokenizer": null`.
  static Tokenizer from_path(const std::filesystem::path& path);

  /// Loads Hugging Face's format: vocab.json (token -> id object) and
  /// merges.txt (one "a b" pair per line, in rank order; a first line
  /// starting with "#version" is skipped; blank lines are ignored).
  /// Throws TokenizerError naming the file on a read or parse error, on a
  /// merge line that is not two space-separated symbols, or when the vocab
  /// lacks `<|startoftext|>` or `<|endoftext|>`.
  static Tokenizer from_vocab_merges(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);

  /// from_vocab_merges on the two files' texts, with no file read (tests and
  /// fuzz targets): `vocab_name` and `merges_name` stand for the files in
  /// errors. Throws TokenizerError as from_vocab_merges does.
  static Tokenizer from_vocab_merges_text(std::string_view vocab_json_text, std::string_view merges_text,
                                          const std::string& vocab_name, const std::string& merges_name);

  /// Loads OpenAI's gzip merges file and derives CLIP's vocabulary from it:
  /// the 256 byte symbols, the same with `</w>`, then the merged symbols of
  /// the first 48,894 merges after the header line, then `<|startoftext|>`
  /// (49406) and `<|endoftext|>` (49407): 49,408 tokens in all.
  /// Throws TokenizerError naming the file on a read error or when it holds
  /// fewer than 48,894 merges.
  static Tokenizer from_clip_gz(const std::filesystem::path& gz_path);

  /// Builds a tokenizer from an in-memory vocabulary and merge list (merges
  /// in rank order). Throws TokenizerError (naming `source`) when a merge is
  /// malformed or the vocab lacks `<|startoftext|>` / `<|endoftext|>`.
  Tokenizer(std::unordered_map<std::string, int64_t> vocab,
            const std::vector<std::pair<std::string, std::string>>& merges, const std::string& source = "<memory>");

  /// Ids of `text` with BOS first and EOS last, no padding or truncation.
  /// A symbol missing from the vocabulary maps to the EOS id, the unknown
  /// token of CLIP's Hugging Face tokenizer.
  std::vector<int64_t> encode(std::string_view text) const;

  /// Ids of `text` padded or truncated to exactly `context_length` ids
  /// (the text encoder's `input_ids` row, [L] int64). Padding appends
  /// pad_id(); truncation keeps BOS and the first context_length - 2 tokens,
  /// then EOS (what clip.tokenize(truncate=True) and Hugging Face give), and
  /// calls `warn` once with a message saying how many tokens were dropped.
  /// Throws TokenizerError when context_length < 2.
  std::vector<int64_t> encode_padded(std::string_view text, int64_t context_length,
                                     const WarningSink& warn = stderr_warning_sink) const;

  /// BPE of one pre-tokenized piece (already cleaned): the symbol strings
  /// after merging, the last one ending in `</w>`. For tests and debugging.
  std::vector<std::string> bpe(std::string_view piece) const;

  int64_t bos_id() const { return bos_id_; }  ///< id of `<|startoftext|>`
  int64_t eos_id() const { return eos_id_; }  ///< id of `<|endoftext|>`
  /// Padding id; defaults to eos_id() (as CLIP and Stable Diffusion pad).
  int64_t pad_id() const { return pad_id_; }
  void set_pad_id(int64_t id) { pad_id_ = id; }
  /// Number of entries in the vocabulary.
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  /// Id of a vocabulary symbol, or -1 when absent.
  int64_t token_id(const std::string& token) const;

 private:
  void append_piece_ids(std::string_view piece, std::vector<int64_t>& ids) const;

  std::unordered_map<std::string, int64_t> vocab_;
  /// "first second" (symbols never hold a space: the byte table maps 0x20
  /// to U+0120) -> merge rank, lower merges first.
  std::unordered_map<std::string, int> ranks_;
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;
  int64_t pad_id_ = -1;
};

}  // namespace fewstep
