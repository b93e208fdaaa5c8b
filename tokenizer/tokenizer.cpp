// CLIP byte-level BPE tokenizer; see tokenizer.h for the algorithm and sources.
#include "tokenizer/tokenizer.h"

#include <re2/re2.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <unordered_set>

#include "tokenizer/text.h"

namespace fewstep {
namespace {

using text::append_utf8;
using text::collapse_whitespace;
using text::decode_utf8;
using text::encode_utf8;
using text::html_unescape_once;
using text::to_lower_utf8;

constexpr const char* kStartOfText = "<|startoftext|>";
constexpr const char* kEndOfText = "<|endoftext|>";
constexpr const char* kEndOfWord = "</w>";
/// CLIP keeps 49152 - 256 - 2 merges of the gz file (its `merges[1:49152-256-2+1]`).
constexpr size_t kClipMergeCount = 49152 - 256 - 2;

// ---- byte table --------------------------------------------------------------

/// GPT-2/CLIP bytes_to_unicode: printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ'
/// map to the same code point; the remaining 68 map to 256, 257, ... in
/// increasing byte order. Also gives the table's iteration order, which fixes
/// the first 256 ids of CLIP's vocabulary.
struct ByteTable {
  std::array<std::string, 256> symbol;
  std::array<uint8_t, 256> order;  ///< CLIP's vocabulary order of the bytes
  ByteTable() {
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
    size_t n = 0;
    for (int b = 0; b < 256; ++b) {
      if (printable(b)) order[n++] = static_cast<uint8_t>(b);
    }
    char32_t next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      if (!printable(b)) order[n++] = static_cast<uint8_t>(b);
      append_utf8(printable(b) ? static_cast<char32_t>(b) : next_extra++, symbol[static_cast<size_t>(b)]);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

// ---- files -------------------------------------------------------------------

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TokenizerError("cannot read tokenizer file " + path.string());
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string read_gzip_file(const std::filesystem::path& path) {
  gzFile f = gzopen(path.string().c_str(), "rb");
  if (f == nullptr) throw TokenizerError("cannot read tokenizer file " + path.string());
  std::string data;
  std::array<char, 1 << 16> chunk{};
  int n = 0;
  while ((n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()))) > 0) {
    data.append(chunk.data(), static_cast<size_t>(n));
  }
  const bool failed = n < 0;
  gzclose(f);
  if (failed) throw TokenizerError("corrupt gzip data in tokenizer file " + path.string());
  return data;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

/// Parses "first second"; throws naming `source` and the 1-based line number.
std::pair<std::string, std::string> parse_merge(std::string_view line, const std::string& source, size_t line_no) {
  const size_t space = line.find(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 >= line.size() ||
      line.find(' ', space + 1) != std::string_view::npos) {
    throw TokenizerError(source + ": line " + std::to_string(line_no) +
                         ": a merge must be two symbols separated by one space");
  }
  return {std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
}

/// True for a token of one byte symbol, with or without </w>.
bool is_byte_symbol(const std::string& token) {
  static const std::unordered_set<std::string> symbols = [] {
    std::unordered_set<std::string> out;
    for (const std::string& sym : byte_table().symbol) {
      out.insert(sym);
      out.insert(sym + kEndOfWord);
    }
    return out;
  }();
  return symbols.count(token) > 0;
}

/// The vocabulary and merges of a CLIP-format pair must describe one BPE:
/// every merge's parts and result are tokens, and every token other than a
/// byte symbol (with or without </w>) and the two specials is some merge's
/// result. An empty or truncated merges file, or one from another model,
/// breaks the last rule, so prompts would be encoded differently from
/// training: it is refused, naming the file.
void check_vocab_merges(const std::unordered_map<std::string, int64_t>& vocab,
                        const std::vector<std::pair<std::string, std::string>>& merges,
                        const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt) {
  std::unordered_set<std::string> results;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [first, second] = merges[r];
    for (const std::string& t : {first, second, first + second}) {
      if (!vocab.count(t))
        throw TokenizerError(merges_txt.string() + ": merge " + std::to_string(r + 1) + " (\"" + first + " " + second +
                             "\") uses \"" + t + "\", which is not in " + vocab_json.filename().string());
    }
    results.insert(first + second);
  }
  size_t unreachable = 0;
  for (const auto& entry : vocab) {
    const std::string& t = entry.first;
    unreachable += t != kStartOfText && t != kEndOfText && !is_byte_symbol(t) && !results.count(t);
  }
  if (unreachable > 0)
    throw TokenizerError(merges_txt.string() + ": " + std::to_string(merges.size()) + " merges leave " +
                         std::to_string(unreachable) + " tokens of " + vocab_json.filename().string() +
                         " unreachable (an empty, truncated or another model's merges file)");
}

}  // namespace

void stderr_warning_sink(const std::string& message) { std::cerr << "warning: " << message << '\n'; }

const std::string& byte_to_unicode(uint8_t b) { return byte_table().symbol[b]; }

std::string clean_text(std::string_view text) {
  const std::u32string unescaped = html_unescape_once(html_unescape_once(decode_utf8(text)));
  return to_lower_utf8(encode_utf8(collapse_whitespace(unescaped)));
}

// ---- Tokenizer ----------------------------------------------------------------

Tokenizer::Tokenizer(std::unordered_map<std::string, int64_t> vocab,
                     const std::vector<std::pair<std::string, std::string>>& merges, const std::string& source)
    : vocab_(std::move(vocab)) {
  ranks_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [first, second] = merges[r];
    if (first.empty() || second.empty() || first.find(' ') != std::string::npos ||
        second.find(' ') != std::string::npos) {
      throw TokenizerError(source + ": merge " + std::to_string(r) + " is not a pair of non-empty symbols");
    }
    ranks_[first + ' ' + second] = static_cast<int>(r);  // a repeated pair keeps its last rank, as dict()
  }
  bos_id_ = token_id(kStartOfText);
  eos_id_ = token_id(kEndOfText);
  if (bos_id_ < 0 || eos_id_ < 0) {
    throw TokenizerError(source + ": the vocabulary lacks " + (bos_id_ < 0 ? kStartOfText : kEndOfText));
  }
  pad_id_ = eos_id_;
}

Tokenizer Tokenizer::from_vocab_merges(const std::filesystem::path& vocab_json,
                                       const std::filesystem::path& merges_txt) {
  return from_vocab_merges_text(read_text_file(vocab_json), read_text_file(merges_txt), vocab_json.string(),
                                merges_txt.string());
}

Tokenizer Tokenizer::from_vocab_merges_text(std::string_view vocab_json_text, std::string_view merges_text,
                                            const std::string& vocab_name, const std::string& merges_name) {
  std::unordered_map<std::string, int64_t> vocab;
  {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(vocab_json_text);
    } catch (const nlohmann::json::exception&) {
      throw TokenizerError(vocab_name + ": not valid JSON");
    }
    if (!j.is_object()) throw TokenizerError(vocab_name + ": expected an object of token -> id");
    for (const auto& [token, id] : j.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        throw TokenizerError(vocab_name + ": the id of token \"" + token + "\" is not a non-negative integer");
      }
      vocab[token] = id.get<int64_t>();
    }
  }
  std::vector<std::pair<std::string, std::string>> merges;
  const auto lines = split_lines(merges_text);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty() || (i == 0 && lines[i].starts_with("#version"))) continue;
    merges.push_back(parse_merge(lines[i], merges_name, i + 1));
  }
  check_vocab_merges(vocab, merges, vocab_name, merges_name);
  return Tokenizer(std::move(vocab), merges, vocab_name);
}

Tokenizer Tokenizer::from_clip_gz(const std::filesystem::path& gz_path) {
  const std::string text = read_gzip_file(gz_path);
  const auto lines = split_lines(text);
  // Line 0 is the "#version" header; CLIP keeps the next kClipMergeCount lines.
  if (lines.size() < kClipMergeCount + 1) {
    throw TokenizerError(gz_path.string() + ": holds " + std::to_string(lines.size() - 1) +
                         " merge lines, CLIP needs " + std::to_string(kClipMergeCount));
  }
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kClipMergeCount);
  for (size_t i = 1; i <= kClipMergeCount; ++i) merges.push_back(parse_merge(lines[i], gz_path.string(), i + 1));

  // CLIP's vocabulary: bytes in table order, the same with </w>, merged symbols, specials.
  std::vector<std::string> tokens;
  tokens.reserve(2 * 256 + merges.size() + 2);
  for (uint8_t b : byte_table().order) tokens.push_back(byte_to_unicode(b));
  for (size_t k = 0; k < 256; ++k) tokens.push_back(tokens[k] + kEndOfWord);
  for (const auto& [first, second] : merges) tokens.push_back(first + second);
  tokens.emplace_back(kStartOfText);
  tokens.emplace_back(kEndOfText);
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = static_cast<int64_t>(id);  // later wins, as dict()
  return Tokenizer(std::move(vocab), merges, gz_path.string());
}

Tokenizer Tokenizer::from_path(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec) && path.extension() == ".gz") return from_clip_gz(path);
  const bool is_manifest = fs::is_regular_file(path, ec) && path.filename() == "model.json";
  if (!is_manifest && !fs::is_directory(path, ec)) {
    throw TokenizerError("tokenizer path " + path.string() +
                         " is not a model folder, a vocab.json + merges.txt folder or a .gz merges file");
  }
  const fs::path folder = is_manifest ? path.parent_path() : path;
  const fs::path manifest = folder / "model.json";
  if (fs::is_regular_file(manifest, ec)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(manifest));
    } catch (const nlohmann::json::exception&) {
      throw TokenizerError(manifest.string() + ": not valid JSON");
    }
    if (!j.is_object() || !j.contains("tokenizer"))
      throw TokenizerError(manifest.string() + ": missing field tokenizer");
    const auto& t = j["tokenizer"];
    if (t.is_null()) throw TokenizerError(manifest.string() + ": the model has no tokenizer (tokenizer is null)");
    for (const char* key : {"vocab", "merges"}) {
      if (!t.is_object() || !t.contains(key) || !t[key].is_string()) {
        throw TokenizerError(manifest.string() + ": field tokenizer." + key + " must be a string (a path)");
      }
    }
    return from_vocab_merges(folder / t["vocab"].get<std::string>(), folder / t["merges"].get<std::string>());
  }
  if (fs::is_regular_file(folder / "vocab.json", ec) && fs::is_regular_file(folder / "merges.txt", ec)) {
    return from_vocab_merges(folder / "vocab.json", folder / "merges.txt");
  }
  throw TokenizerError("tokenizer folder " + folder.string() + " has neither model.json nor vocab.json + merges.txt");
}

int64_t Tokenizer::token_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::vector<std::string> Tokenizer::bpe(std::string_view piece) const {
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (char c : piece) word.push_back(byte_to_unicode(static_cast<uint8_t>(c)));
  if (word.empty()) return word;
  word.back() += kEndOfWord;
  // Repeatedly merge every occurrence (left to right) of the lowest-ranked pair.
  while (word.size() > 1) {
    int best_rank = std::numeric_limits<int>::max();
    size_t best = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = ranks_.find(word[i] + ' ' + word[i + 1]);
      if (it != ranks_.end() && it->second < best_rank) best_rank = it->second, best = i;
    }
    if (best_rank == std::numeric_limits<int>::max()) break;
    const std::string first = word[best];
    const std::string second = word[best + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word = std::move(merged);
  }
  return word;
}

void Tokenizer::append_piece_ids(std::string_view piece, std::vector<int64_t>& ids) const {
  if (piece == kStartOfText || piece == kEndOfText) {
    ids.push_back(token_id(std::string(piece)));
    return;
  }
  for (const std::string& symbol : bpe(piece)) {
    const int64_t id = token_id(symbol);
    ids.push_back(id >= 0 ? id : eos_id_);  // unknown symbol -> <|endoftext|>, HF's unk_token
  }
}

std::vector<int64_t> Tokenizer::encode(std::string_view text) const {
  // CLIP's pre-tokenization pattern (used case-insensitively, as CLIP does).
  // After clean_text every whitespace run is one ASCII space, so RE2's ASCII
  // \s agrees with the Unicode \s of Python's `regex`.
  static const RE2 pattern(
      R"((<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+))", [] {
        RE2::Options options;
        options.set_case_sensitive(false);
        options.set_log_errors(false);
        return options;
      }());
  const std::string cleaned = clean_text(text);
  std::vector<int64_t> ids{bos_id_};
  re2::StringPiece input(cleaned);
  re2::StringPiece piece;
  while (RE2::FindAndConsume(&input, pattern, &piece)) {
    append_piece_ids(std::string_view(piece.data(), piece.size()), ids);
  }
  ids.push_back(eos_id_);
  return ids;
}

std::vector<int64_t> Tokenizer::encode_padded(std::string_view text, int64_t context_length,
                                              const WarningSink& warn) const {
  if (context_length < 2) {
    throw TokenizerError("context_length must be at least 2 (BOS and EOS), got " + std::to_string(context_length));
  }
  std::vector<int64_t> ids = encode(text);
  const auto length = static_cast<size_t>(context_length);
  if (ids.size() > length) {
    const size_t dropped = ids.size() - length;
    ids.resize(length);
    ids.back() = eos_id_;
    if (warn) {
      warn("prompt is " + std::to_string(length + dropped) + " tokens with BOS and EOS, over the context length " +
           std::to_string(length) + ": dropped the last " + std::to_string(dropped) + " tokens");
    }
  }
  ids.resize(length, pad_id_);
  return ids;
}

}  // namespace fewstep
