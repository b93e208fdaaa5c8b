// CLIP byte-level BPE tokenizer; see tokenizer.h for the algorithm and sources.
#include "pipeline/tokenizer.h"

#include <re2/re2.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#if FEWSTEP_TOKENIZER_ICU
#include <unicode/locid.h>
#include <unicode/unistr.h>
#else
#include <clocale>
#include <cwctype>
#endif

namespace fewstep {
namespace {

constexpr const char* kStartOfText = "<|startoftext|>";
constexpr const char* kEndOfText = "<|endoftext|>";
constexpr const char* kEndOfWord = "</w>";
/// CLIP keeps 49152 - 256 - 2 merges of the gz file (its `merges[1:49152-256-2+1]`).
constexpr size_t kClipMergeCount = 49152 - 256 - 2;

// ---- UTF-8 <-> code points -------------------------------------------------

constexpr char32_t kReplacement = 0xFFFD;

/// Decodes UTF-8; every byte that does not start a valid sequence becomes U+FFFD.
std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = 0;
    char32_t cp = 0;
    char32_t min_cp = 0;
    if (b0 < 0x80) {
      len = 1, cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min_cp = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min_cp = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min_cp = 0x10000;
    }
    bool ok = len > 0 && i + static_cast<size_t>(len) <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      ok = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    ok = ok && cp >= min_cp && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.push_back(cp);
      i += static_cast<size_t>(len);
    } else {
      out.push_back(kReplacement);
      i += 1;
    }
  }
  return out;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) append_utf8(cp, out);
  return out;
}

// ---- HTML unescaping (the WHATWG character-reference rules, small table) ----

/// Named references recognised. HTML5 defines ~2,200; prompts only meet the
/// few that escape markup characters, so those are all we decode. Names
/// marked legacy also match without the trailing ';' (HTML5 allows it).
struct NamedEntity {
  std::u32string_view name;
  char32_t value;
  bool legacy;
};
constexpr std::array<NamedEntity, 10> kNamedEntities{{
    {U"amp", U'&', true},  {U"AMP", U'&', true},   {U"lt", U'<', true},
    {U"LT", U'<', true},   {U"gt", U'>', true},    {U"GT", U'>', true},
    {U"quot", U'"', true}, {U"QUOT", U'"', true},  {U"apos", U'\'', false},
    {U"nbsp", 0xA0, true},
}};

/// WHATWG "numeric character reference end state": code points 0x80-0x9F
/// are read as Windows-1252 (0 where the byte is undefined there: kept as is).
constexpr std::array<char32_t, 32> kWindows1252High{
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

/// Appends the decoding of numeric reference `num` (as Python's html.unescape).
void append_numeric_reference(uint64_t num, std::u32string& out) {
  if (num == 0) return out.push_back(kReplacement);
  if (num == 0x0D) return out.push_back(U'\r');
  if (num >= 0x80 && num <= 0x9F) {
    const char32_t mapped = kWindows1252High[num - 0x80];
    return out.push_back(mapped != 0 ? mapped : static_cast<char32_t>(num));
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return out.push_back(kReplacement);
  const bool control = (num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
                       num == 0x7F;
  const bool noncharacter = (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  if (control || noncharacter) return;  // dropped
  out.push_back(static_cast<char32_t>(num));
}

bool is_digit(char32_t c, int base) {
  if (c >= U'0' && c <= U'9') return true;
  return base == 16 && ((c >= U'a' && c <= U'f') || (c >= U'A' && c <= U'F'));
}

uint32_t digit_value(char32_t c) {
  if (c <= U'9') return static_cast<uint32_t>(c - U'0');
  return static_cast<uint32_t>((c | 0x20) - U'a' + 10);
}

/// One pass of Python's html.unescape: at each '&', a numeric reference
/// `#[0-9]+;?` / `#[xX][0-9a-fA-F]+;?`, or a name of 1-32 characters outside
/// "\t\n\f <&#;" plus an optional ';' that is decoded when it (or, for legacy
/// names, its longest prefix) is in kNamedEntities. Anything else is kept.
std::u32string html_unescape_once(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    size_t j = i + 1;
    if (j < s.size() && s[j] == U'#') {
      const bool hex = j + 1 < s.size() && (s[j + 1] == U'x' || s[j + 1] == U'X');
      const int base = hex ? 16 : 10;
      size_t k = j + (hex ? 2 : 1);
      const size_t digits_begin = k;
      uint64_t num = 0;
      for (; k < s.size() && is_digit(s[k], base); ++k) {
        num = std::min<uint64_t>(num * static_cast<uint64_t>(base) + digit_value(s[k]), 0x7FFFFFFF);
      }
      if (k == digits_begin) {  // "&#" or "&#x" without digits: not a reference
        out.push_back(s[i++]);
        continue;
      }
      if (k < s.size() && s[k] == U';') ++k;
      append_numeric_reference(num, out);
      i = k;
      continue;
    }
    size_t k = j;
    while (k < s.size() && k - j < 32 && std::u32string_view(U"\t\n\f <&#;").find(s[k]) == std::u32string_view::npos) {
      ++k;
    }
    if (k == j) {
      out.push_back(s[i++]);
      continue;
    }
    const std::u32string_view name(s.data() + j, k - j);
    const bool semicolon = k < s.size() && s[k] == U';';
    const size_t end = semicolon ? k + 1 : k;
    // Exact match with ';' (any entity) or without it (legacy entities).
    const NamedEntity* exact = nullptr;
    for (const auto& e : kNamedEntities) {
      if (e.name == name && (semicolon || e.legacy)) exact = &e;
    }
    if (exact != nullptr) {
      out.push_back(exact->value);
      i = end;
      continue;
    }
    // Longest legacy name that prefixes the match; the rest is kept verbatim.
    const NamedEntity* prefix = nullptr;
    for (const auto& e : kNamedEntities) {
      if (e.legacy && e.name.size() < name.size() + (semicolon ? 1 : 0) && name.starts_with(e.name) &&
          (prefix == nullptr || e.name.size() > prefix->name.size())) {
        prefix = &e;
      }
    }
    if (prefix != nullptr) {
      out.push_back(prefix->value);
      i = j + prefix->name.size();
    } else {
      out.append(s, i, end - i);
      i = end;
    }
  }
  return out;
}

// ---- whitespace and case -----------------------------------------------------

/// The code points for which Python's str.isspace() is true.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/// Runs of whitespace -> one space, then trim both ends.
std::u32string collapse_whitespace(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (char32_t c : s) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(U' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

/// Unicode lower-casing of UTF-8 text. With ICU: the full default mapping
/// (SpecialCasing, final sigma), as Python's str.lower(). Without ICU: the
/// C library's simple per-code-point mapping in the C.UTF-8 locale.
std::string to_lower_utf8(const std::string& s) {
#if FEWSTEP_TOKENIZER_ICU
  std::string out;
  icu::UnicodeString::fromUTF8(s).toLower(icu::Locale::getRoot()).toUTF8String(out);
  return out;
#else
  static const locale_t c_utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
  std::u32string cps = decode_utf8(s);
  for (char32_t& c : cps) {
    if (c < 0x80) {
      if (c >= U'A' && c <= U'Z') c += 0x20;
    } else if (c_utf8 != static_cast<locale_t>(0)) {
      c = static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), c_utf8));
    }
  }
  return encode_utf8(cps);
#endif
}

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
std::pair<std::string, std::string> parse_merge(std::string_view line, const std::string& source,
                                                size_t line_no) {
  const size_t space = line.find(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 >= line.size() ||
      line.find(' ', space + 1) != std::string_view::npos) {
    throw TokenizerError(source + ": line " + std::to_string(line_no) +
                         ": a merge must be two symbols separated by one space");
  }
  return {std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
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
  std::unordered_map<std::string, int64_t> vocab;
  {
    const std::string text = read_text_file(vocab_json);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception&) {
      throw TokenizerError(vocab_json.string() + ": not valid JSON");
    }
    if (!j.is_object()) throw TokenizerError(vocab_json.string() + ": expected an object of token -> id");
    for (const auto& [token, id] : j.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        throw TokenizerError(vocab_json.string() + ": the id of token \"" + token +
                             "\" is not a non-negative integer");
      }
      vocab[token] = id.get<int64_t>();
    }
  }
  std::vector<std::pair<std::string, std::string>> merges;
  const std::string text = read_text_file(merges_txt);
  const auto lines = split_lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty() || (i == 0 && lines[i].starts_with("#version"))) continue;
    merges.push_back(parse_merge(lines[i], merges_txt.string(), i + 1));
  }
  return Tokenizer(std::move(vocab), merges, vocab_json.string());
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
    if (!j.is_object() || !j.contains("tokenizer")) throw TokenizerError(manifest.string() + ": missing field tokenizer");
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
      R"((<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+))",
      [] {
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
