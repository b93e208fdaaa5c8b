// Sampler options, typed once, and the option-string parsers; see config.h.
#include "samplers/config.h"

#include <algorithm>
#include <sstream>

#include "common/parse.h"

namespace fewstep {
namespace {

std::string fmt(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

[[noreturn]] void bad_value(const SamplerOptionInfo& info, const std::string& value, const std::string& valid) {
  throw SamplerError("sampler option " + info.name + "=" + value + " is invalid; valid: " + valid);
}

std::string valid_keys(const std::vector<SamplerOptionInfo>& table) {
  std::string s;
  for (const auto& o : table) s += (s.empty() ? "" : ", ") + o.name;
  return s.empty() ? "(none)" : s;
}

}  // namespace

bool IndexList::contains(int64_t i) const { return all || std::find(items.begin(), items.end(), i) != items.end(); }

void ResolvedOptions::set(const std::string& key, Value value, std::string text) {
  values_[key] = std::move(value);
  text_[key] = std::move(text);
}

std::pair<ResolvedOptions::Value, std::string> check_option_value(const SamplerOptionInfo& info,
                                                                  const std::string& value) {
  switch (info.kind) {
    case OptionKind::choice: {
      std::string all;
      const std::string v = trim(value);
      for (const auto& c : info.choices) {
        if (c == v) return {c, c};
        all += (all.empty() ? "" : "|") + c;
      }
      bad_value(info, value, all);
    }
    case OptionKind::boolean: {
      const auto b = parse_bool(value);
      if (!b) bad_value(info, value, "true|false");
      return {*b, *b ? "true" : "false"};
    }
    case OptionKind::integer: {
      const auto v = parse_integer(value);
      if (!v || static_cast<double>(*v) < info.min || static_cast<double>(*v) > info.max)
        bad_value(info, value, "an integer in [" + fmt(info.min) + ", " + fmt(info.max) + "]");
      return {*v, std::to_string(*v)};
    }
    case OptionKind::real: {
      const auto v = parse_real(value);
      if (!v || *v < info.min || *v > info.max)
        bad_value(info, value, "a number in [" + fmt(info.min) + ", " + fmt(info.max) + "]");
      return {*v, trim(value)};
    }
    case OptionKind::real_list: {
      std::vector<double> out;
      std::string text;
      for (const auto& part : split_list(value, ',')) {
        const auto v = parse_real(part);
        if (!v) bad_value(info, value, "a comma-separated list of numbers");
        out.push_back(*v);
        text += (text.empty() ? "" : ",") + part;
      }
      return {out, text};
    }
    case OptionKind::index_list: {
      IndexList out;
      if (trim(value) == "all") {
        out.all = true;
        return {out, "all"};
      }
      std::string text;
      for (const auto& part : split_list(value, ',')) {
        const auto v = parse_integer(part);
        if (!v || *v < 0) bad_value(info, value, "all, or a comma list of step indices >= 0");
        out.items.push_back(*v);
        text += (text.empty() ? "" : ",") + std::to_string(*v);
      }
      return {out, text};
    }
  }
  bad_value(info, value, "(unknown option kind)");
}

ResolvedOptions resolve_options(const std::vector<SamplerOptionInfo>& table, const SamplerOptions& given,
                                const std::string& owner) {
  for (const auto& entry : given) {
    const std::string& key = entry.first;  // a plain name: clang 14 cannot capture structured bindings
    const bool known =
        std::any_of(table.begin(), table.end(), [&](const SamplerOptionInfo& o) { return o.name == key; });
    if (!known)
      throw SamplerError("unknown sampler option '" + key + "' for sampler '" + owner +
                         "' (valid: " + valid_keys(table) + ")");
  }
  ResolvedOptions out;
  for (const auto& row : table) {
    const auto it = given.find(row.name);
    const bool is_default = it == given.end();
    // Empty choice defaults ("" = defer to the scheduler config) are kept as
    // they are; every other value is checked.
    if (is_default && row.kind == OptionKind::choice && row.default_value.empty()) {
      out.set(row.name, std::string(), "");
      continue;
    }
    auto [value, text] = check_option_value(row, is_default ? row.default_value : it->second);
    out.set(row.name, std::move(value), std::move(text));
  }
  return out;
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

SamplerOptions parse_option_items(const std::vector<std::string>& items) {
  SamplerOptions out;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || trim(item.substr(0, eq)).empty())
      throw SamplerError("--sampler-option: expected key=value, got '" + item + "'");
    out[trim(item.substr(0, eq))] = item.substr(eq + 1);
  }
  return out;
}

PicardOptions parse_picard(const std::string& spec) {
  PicardOptions p;
  const std::string usage = "--parallel '" + spec + "': expected picard:window=P,tol=T[,max_rounds=R]";
  const std::string head = "picard";
  if (spec.rfind(head, 0) != 0) throw SamplerError(usage);
  const std::string rest = spec.substr(head.size());
  if (rest.empty()) return p;
  if (rest[0] != ':') throw SamplerError(usage);
  for (const std::string& item : split_list(rest.substr(1), ',')) {
    const auto eq = item.find('=');
    const std::string key = trim(item.substr(0, eq)), value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "window" || key == "max_rounds") {
      const auto v = parse_integer(value);
      const int64_t least = key == "window" ? 1 : 0;
      if (!v || *v < least)
        throw SamplerError("--parallel picard: " + key + "='" + value +
                           "' must be an integer >= " + std::to_string(least));
      (key == "window" ? p.window : p.max_rounds) = *v;
    } else if (key == "tol") {
      const auto v = parse_real(value);
      if (!v || !(*v > 0)) throw SamplerError("--parallel picard: tol='" + value + "' must be a number > 0");
      p.tol = *v;
    } else {
      throw SamplerError("--parallel picard: unknown key '" + key + "' (valid: window, tol, max_rounds)");
    }
  }
  return p;
}

}  // namespace fewstep
