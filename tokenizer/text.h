// Text helpers of the CLIP tokenizer's clean-up step (ftfy-free
// basic_clean + whitespace_clean + lower(), as CLIP's simple_tokenizer.py
// applies them): UTF-8 decoding, HTML unescaping, whitespace and case.
// No torch.
#pragma once

#include <string>
#include <string_view>

namespace fewstep::text {

/// The replacement character that invalid UTF-8 decodes to.
inline constexpr char32_t kReplacement = 0xFFFD;

/// Decodes UTF-8 (RFC 3629); every byte that does not start a valid,
/// shortest-form sequence of a scalar value becomes U+FFFD. Never throws.
std::u32string decode_utf8(std::string_view s);

/// Appends the UTF-8 encoding of one code point (U+FFFD for surrogates and
/// values above U+10FFFF).
void append_utf8(char32_t cp, std::string& out);

/// Encodes code points as UTF-8.
std::string encode_utf8(const std::u32string& s);

/// One pass of HTML character-reference unescaping, as Python's
/// html.unescape (WHATWG "named character references" for a small table of
/// common names, and numeric references with the HTML5 replacements).
std::u32string html_unescape_once(const std::u32string& s);

/// The code points for which Python's str.isspace() is true.
bool is_space(char32_t c);

/// Runs of whitespace become one space; both ends are trimmed.
std::u32string collapse_whitespace(const std::u32string& s);

/// Unicode lower-casing of UTF-8 text with ICU's full default mapping
/// (SpecialCasing, final sigma), as Python's str.lower(). Invalid UTF-8
/// becomes U+FFFD.
std::string to_lower_utf8(const std::string& s);

}  // namespace fewstep::text
