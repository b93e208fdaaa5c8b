// The one set of text-value parsers every layer uses (flags, option strings,
// manifests, file headers). No torch, no exceptions: each returns nullopt on
// anything it does not accept, and the caller names the flag or field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fewstep {

/// `s` without leading and trailing spaces, tabs, CR and LF.
std::string trim(std::string_view s);

/// A whole decimal integer (optional sign, surrounding whitespace allowed)
/// in int64 range; nullopt on anything else (empty, trailing text, overflow).
std::optional<int64_t> parse_integer(std::string_view s);

/// A whole unsigned decimal integer in [0, 2^64 - 1] (no sign); nullopt otherwise.
std::optional<uint64_t> parse_unsigned(std::string_view s);

/// A finite decimal number (surrounding whitespace allowed); nullopt on
/// anything else, NaN and infinities included.
std::optional<double> parse_real(std::string_view s);

/// true|false, 1|0, yes|no, on|off (and Python's True|False); nullopt otherwise.
std::optional<bool> parse_bool(std::string_view s);

/// Splits on `sep` and trims each item. An empty or all-blank `s` gives no
/// items; "a,,b" and "a," keep their empty items, so callers can refuse them.
std::vector<std::string> split_list(std::string_view s, char sep);

}  // namespace fewstep
