// Text helpers of the tokenizer (see text.h).
#include "tokenizer/text.h"

#include <array>
#include <cstdint>

#include <unicode/locid.h>
#include <unicode/unistr.h>

namespace fewstep::text {

// ---- UTF-8 <-> code points -------------------------------------------------

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
namespace {

/// Named references recognised. HTML5 defines ~2,200; prompts only meet the
/// few that escape markup characters, so those are all we decode. Names
/// marked legacy also match without the trailing ';' (HTML5 allows it).
struct NamedEntity {
  std::u32string_view name;
  char32_t value;
  bool legacy;
};
constexpr std::array<NamedEntity, 10> kNamedEntities{{
    {U"amp", U'&', true},
    {U"AMP", U'&', true},
    {U"lt", U'<', true},
    {U"LT", U'<', true},
    {U"gt", U'>', true},
    {U"GT", U'>', true},
    {U"quot", U'"', true},
    {U"QUOT", U'"', true},
    {U"apos", U'\'', false},
    {U"nbsp", 0xA0, true},
}};

/// WHATWG "numeric character reference end state": code points 0x80-0x9F
/// are read as Windows-1252 (0 where the byte is undefined there: kept as is).
constexpr std::array<char32_t, 32> kWindows1252High{0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                                    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
                                                    0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                                    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

/// Appends the decoding of numeric reference `num` (as Python's html.unescape).
void append_numeric_reference(uint64_t num, std::u32string& out) {
  if (num == 0) return out.push_back(kReplacement);
  if (num == 0x0D) return out.push_back(U'\r');
  if (num >= 0x80 && num <= 0x9F) {
    const char32_t mapped = kWindows1252High[num - 0x80];
    return out.push_back(mapped != 0 ? mapped : static_cast<char32_t>(num));
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return out.push_back(kReplacement);
  const bool control = (num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) || num == 0x7F;
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

}  // namespace

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
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
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

/// Unicode lower-casing of UTF-8 text with ICU's full default mapping
/// (SpecialCasing, final sigma), as Python's str.lower().
std::string to_lower_utf8(const std::string& s) {
  std::string out;
  icu::UnicodeString::fromUTF8(s).toLower(icu::Locale::getRoot()).toUTF8String(out);
  return out;
}

}  // namespace fewstep::text
