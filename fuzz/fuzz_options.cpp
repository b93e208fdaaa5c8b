// libFuzzer target: the option-string parsers of the CLI. The first byte
// picks a parser ('0' the first, '1' the second, ...; any byte maps to one),
// the rest is its text. Adding a parser (the coming --cache spec) is one line
// in kParsers, plus seeds in fuzz/corpus/options/ starting with its digit.
//
// --sampler-option: the text's lines are the repeated items; they are
// resolved against option tables shaped like the samplers' (the real tables
// are built in the torch-side sampler files; these use the same row builders
// and every option kind), and a resolved set's normalised text must resolve
// to itself again.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "samplers/config.h"

namespace {

using namespace fewstep;

/// Tables like dpmpp_2m_sde's, unipc's and lcm's (see samplers/*.cpp).
const std::vector<std::vector<SamplerOptionInfo>>& tables() {
  static const auto all = [] {
    std::vector<std::vector<SamplerOptionInfo>> t = {
        {int_option("solver_order", 2, 1, 2, "h"), choice_option("solver_type", "midpoint", {"midpoint", "heun"}, "h"),
         bool_option("lower_order_final", true, "h"), bool_option("euler_at_final", false, "h"), eta_option(1.0)},
        {choice_option("solver_type", "bh2", {"bh1", "bh2"}, "h"), int_option("solver_order", 2, 1, 3, "h"),
         index_list_option("disable_corrector", "h"), bool_option("lower_order_final", true, "h")},
        {eta_option(1.0), int_option("original_inference_steps", 50, 1, 1000, "h"),
         real_option("timestep_scaling", 10.0, 0.0, 1e6, "h")},
    };
    for (auto& table : t)
      for (auto& o : schedule_options()) table.push_back(o);
    return t;
  }();
  return all;
}

void sampler_options(const std::string& text) {
  std::vector<std::string> items;  // untrimmed, as the CLI passes them
  for (size_t start = 0; start <= text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  SamplerOptions given;
  try {
    given = parse_option_items(items);
  } catch (const SamplerError&) {
    return;
  }
  for (const auto& table : tables()) {
    try {
      const ResolvedOptions r = resolve_options(table, given, "fuzz");
      if (resolve_options(table, r.text(), "fuzz").text() != r.text()) std::abort();
    } catch (const SamplerError&) {
    }
  }
}

void parallel(const std::string& text) {
  try {
    const PicardOptions p = parse_picard(text);
    if (p.window < 1 || p.max_rounds < 0 || !(p.tol > 0)) std::abort();
  } catch (const SamplerError&) {
  }
}

/// One entry per option-string parser: the first input byte - '0' picks it.
const std::vector<void (*)(const std::string&)> kParsers = {
    sampler_options,  // '0': --sampler-option key=value (one item per line)
    parallel,         // '1': --parallel picard:window=P,tol=T,max_rounds=R
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t parser = static_cast<uint8_t>(data[0] - '0') % kParsers.size();
  kParsers[parser](std::string(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}
