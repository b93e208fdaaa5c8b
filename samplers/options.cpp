// Sampler option parsing and checking; see options.h.
#include "samplers/options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace fewstep {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

bool parse_double(const std::string& text, double& out) {
  const std::string s = trim(text);
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && errno == 0 && std::isfinite(out);
}

bool parse_int(const std::string& text, int64_t& out) {
  const std::string s = trim(text);
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoll(s.c_str(), &end, 10);
  return end == s.c_str() + s.size() && errno == 0;
}

std::optional<bool> parse_bool(const std::string& text) {
  const std::string s = trim(text);
  if (s == "true" || s == "1" || s == "yes" || s == "on" || s == "True") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off" || s == "False") return false;
  return std::nullopt;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  if (trim(s).empty()) return parts;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) parts.push_back(trim(item));
  if (!s.empty() && s.back() == ',') parts.push_back("");
  return parts;
}

std::string fmt(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

[[noreturn]] void bad_value(const SamplerOptionInfo& info, const std::string& value, const std::string& valid) {
  throw SamplerError("sampler option " + info.name + "=" + value + " is invalid; valid: " + valid);
}

}  // namespace

std::string option_or(const SamplerOptions& o, const std::string& key, const std::string& fallback) {
  const auto it = o.find(key);
  return (it == o.end() || it->second.empty()) ? fallback : it->second;
}

double option_double(const SamplerOptions& o, const std::string& key, double fallback) {
  const auto it = o.find(key);
  if (it == o.end() || it->second.empty()) return fallback;
  double v = 0;
  if (!parse_double(it->second, v)) throw SamplerError("sampler option " + key + "=" + it->second + " is not a number");
  return v;
}

int64_t option_int(const SamplerOptions& o, const std::string& key, int64_t fallback) {
  const auto it = o.find(key);
  if (it == o.end() || it->second.empty()) return fallback;
  int64_t v = 0;
  if (!parse_int(it->second, v)) throw SamplerError("sampler option " + key + "=" + it->second + " is not an integer");
  return v;
}

bool option_bool(const SamplerOptions& o, const std::string& key, bool fallback) {
  const auto it = o.find(key);
  if (it == o.end() || it->second.empty()) return fallback;
  const auto b = parse_bool(it->second);
  if (!b) throw SamplerError("sampler option " + key + "=" + it->second + " is not true or false");
  return *b;
}

std::vector<double> option_list(const SamplerOptions& o, const std::string& key) {
  std::vector<double> v;
  const auto it = o.find(key);
  if (it == o.end()) return v;
  for (const auto& part : split_commas(it->second)) {
    double x = 0;
    if (!parse_double(part, x))
      throw SamplerError("sampler option " + key + "=" + it->second + " is not a comma list of numbers");
    v.push_back(x);
  }
  return v;
}

std::string check_option_value(const SamplerOptionInfo& info, const std::string& value) {
  switch (info.kind) {
    case OptionKind::choice: {
      std::string all;
      for (const auto& c : info.choices) {
        if (c == trim(value)) return c;
        if (!all.empty()) all += '|';
        all += c;
      }
      bad_value(info, value, all);
    }
    case OptionKind::boolean: {
      const auto b = parse_bool(value);
      if (!b) bad_value(info, value, "true|false");
      return *b ? "true" : "false";
    }
    case OptionKind::integer: {
      int64_t v = 0;
      const std::string range = "an integer in [" + fmt(info.min) + ", " + fmt(info.max) + "]";
      if (!parse_int(value, v) || static_cast<double>(v) < info.min || static_cast<double>(v) > info.max)
        bad_value(info, value, range);
      return std::to_string(v);
    }
    case OptionKind::real: {
      double v = 0;
      if (!parse_double(value, v) || v < info.min || v > info.max)
        bad_value(info, value, "a number in [" + fmt(info.min) + ", " + fmt(info.max) + "]");
      return trim(value);
    }
    case OptionKind::real_list: {
      std::string out;
      for (const auto& part : split_commas(value)) {
        double v = 0;
        if (!parse_double(part, v)) bad_value(info, value, "a comma-separated list of numbers");
        if (!out.empty()) out += ',';
        out += part;
      }
      return out;
    }
    case OptionKind::index_list: {
      if (trim(value) == "all") return "all";
      std::string out;
      for (const auto& part : split_commas(value)) {
        int64_t v = 0;
        if (!parse_int(part, v) || v < 0) bad_value(info, value, "all, or a comma list of step indices >= 0");
        if (!out.empty()) out += ',';
        out += std::to_string(v);
      }
      return out;
    }
  }
  return value;
}

SamplerOptionInfo choice_option(std::string name, std::string def, std::vector<std::string> choices, std::string help) {
  return {std::move(name), std::move(def), std::move(help), OptionKind::choice, std::move(choices)};
}

SamplerOptionInfo bool_option(std::string name, bool def, std::string help) {
  return {std::move(name), def ? "true" : "false", std::move(help), OptionKind::boolean, {}};
}

SamplerOptionInfo int_option(std::string name, int64_t def, int64_t min, int64_t max, std::string help) {
  return {std::move(name),          std::to_string(def),     std::move(help), OptionKind::integer, {},
          static_cast<double>(min), static_cast<double>(max)};
}

SamplerOptionInfo real_option(std::string name, double def, double min, double max, std::string help) {
  return {std::move(name), fmt(def), std::move(help), OptionKind::real, {}, min, max};
}

SamplerOptionInfo index_list_option(std::string name, std::string help) {
  return {std::move(name), "", std::move(help), OptionKind::index_list, {}};
}

std::vector<SamplerOptionInfo> schedule_options() {
  return {
      // Empty defaults defer to the scheduler config (final_sigmas_type, sigma_spacing).
      choice_option("final_sigmas_type", "", {"zero", "sigma_min"},
                    "the last step's target: sigma 0 (returns x0) or the smallest training sigma "
                    "(default: the scheduler config's, else zero)"),
      choice_option("sigma_spacing", "", {"none", "karras", "exponential", "simple"},
                    "replace the timestep spacing's sigmas (Karras et al. 2022 Eq. 5, geometric, or "
                    "k-diffusion's simple; default: the scheduler config's, else none)"),
      {"timesteps",
       "",
       "user-given descending model timesteps (comma list); overrides steps",
       OptionKind::real_list,
       {}},
      {"sigmas",
       "",
       "user-given descending sigmas (sigma/alpha, or t for flow; comma list); overrides steps",
       OptionKind::real_list,
       {}},
  };
}

SamplerOptionInfo eta_option(double def) {
  return real_option("eta", def, 0.0, 1.0, "stochasticity: 0 deterministic, 1 the full ancestral noise");
}

}  // namespace fewstep
