// Text-value parsers (see parse.h).
#include "common/parse.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace fewstep {

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1));
}

std::optional<int64_t> parse_integer(std::string_view text) {
  std::string s = trim(text);
  if (!s.empty() && s[0] == '+') s.erase(0, 1);
  int64_t v = 0;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

std::optional<uint64_t> parse_unsigned(std::string_view text) {
  const std::string s = trim(text);
  uint64_t v = 0;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

std::optional<double> parse_real(std::string_view text) {
  const std::string s = trim(text);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(std::string_view text) {
  const std::string s = trim(text);
  if (s == "true" || s == "1" || s == "yes" || s == "on" || s == "True") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off" || s == "False") return false;
  return std::nullopt;
}

std::vector<std::string> split_list(std::string_view s, char sep) {
  std::vector<std::string> parts;
  if (trim(s).empty()) return parts;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    parts.push_back(trim(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start)));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return parts;
}

}  // namespace fewstep
