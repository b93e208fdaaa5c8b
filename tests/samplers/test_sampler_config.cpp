// The torch-free sampler config: option tables, typed resolution and the
// option-string parsers of --sampler-option and --parallel (what the
// options fuzz target drives). Built by the sanitizer builds too.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "samplers/config.h"

using namespace fewstep;

namespace {

/// The message of the SamplerError `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const SamplerError& e) {
    return e.what();
  }
  return "";
}

/// A table with one option of each kind, as the samplers build theirs.
std::vector<SamplerOptionInfo> table() {
  std::vector<SamplerOptionInfo> t = {eta_option(0.0), bool_option("lower_order_final", true, "h"),
                                      int_option("solver_order", 2, 1, 3, "h"),
                                      index_list_option("stochastic_steps", "h")};
  for (auto& o : schedule_options()) t.push_back(o);
  return t;
}

}  // namespace

TEST(SamplerConfig, OptionItemsSplitAtTheFirstEquals) {
  const SamplerOptions o = parse_option_items({" eta = 0.5", "sigmas=1,0.5=x", "eta=0.25"});
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o.at("eta"), "0.25");  // a later key wins
  EXPECT_EQ(o.at("sigmas"), "1,0.5=x");
  EXPECT_EQ(error_of([] { parse_option_items({"eta"}); }), "--sampler-option: expected key=value, got 'eta'");
  EXPECT_EQ(error_of([] { parse_option_items({" =1"}); }), "--sampler-option: expected key=value, got ' =1'");
}

TEST(SamplerConfig, ResolveTypesEveryKeyOnce) {
  const ResolvedOptions r = resolve_options(
      table(),
      {{"eta", " 0.5 "}, {"lower_order_final", "off"}, {"timesteps", "999, 500,1"}, {"stochastic_steps", "0,2"}},
      "test");
  EXPECT_DOUBLE_EQ(r.real("eta"), 0.5);
  EXPECT_FALSE(r.flag("lower_order_final"));
  EXPECT_EQ(r.integer("solver_order"), 2);  // the default, typed
  EXPECT_EQ(r.reals("timesteps"), (std::vector<double>{999, 500, 1}));
  EXPECT_TRUE(r.indices("stochastic_steps").contains(2));
  EXPECT_FALSE(r.indices("stochastic_steps").contains(1));
  EXPECT_EQ(r.choice("sigma_spacing"), "");  // defers to the scheduler config
  EXPECT_EQ(r.text().at("timesteps"), "999,500,1");
  EXPECT_EQ(r.text().at("lower_order_final"), "false");
  EXPECT_EQ(r.text().size(), table().size());
}

TEST(SamplerConfig, BadValuesNameKeyAndRange) {
  EXPECT_EQ(error_of([] {
              resolve_options(table(), {{"eta", "1.5"}}, "ddim");
            }),
            "sampler option eta=1.5 is invalid; valid: a number in [0, 1]");
  EXPECT_EQ(error_of([] {
              resolve_options(table(), {{"solver_order", "2.0"}}, "ddim");
            }),
            "sampler option solver_order=2.0 is invalid; valid: an integer in [1, 3]");
  EXPECT_EQ(error_of([] {
              resolve_options(table(), {{"sigma_spacing", "cosine"}}, "ddim");
            }),
            "sampler option sigma_spacing=cosine is invalid; valid: none|karras|exponential|simple");
  EXPECT_EQ(error_of([] {
              resolve_options(table(), {{"stochastic_steps", "1,-2"}}, "ddim");
            }),
            "sampler option stochastic_steps=1,-2 is invalid; valid: all, or a comma list of step indices >= 0");
  EXPECT_EQ(error_of([] {
              resolve_options(table(), {{"sigmas", "1,nan"}}, "ddim");
            }),
            "sampler option sigmas=1,nan is invalid; valid: a comma-separated list of numbers");
  const std::string unknown = error_of([] { resolve_options(table(), {{"order", "2"}}, "ddim"); });
  EXPECT_EQ(unknown.rfind("unknown sampler option 'order' for sampler 'ddim' (valid: eta, lower_order_final,", 0), 0u)
      << unknown;
}

TEST(SamplerConfig, PicardSpec) {
  const PicardOptions p = parse_picard("picard:window=4,tol=0.01,max_rounds=9");
  EXPECT_EQ(p.window, 4);
  EXPECT_DOUBLE_EQ(p.tol, 0.01);
  EXPECT_EQ(p.max_rounds, 9);
  EXPECT_EQ(parse_picard("picard").window, PicardOptions{}.window);
  for (const std::string bad : {"jacobi:window=2", "picard:window=0", "picard:tol=-1", "picard:tol=x", "picard:speed=3",
                                "picard:window=2.5", "picardx"})
    EXPECT_NE(error_of([&] { parse_picard(bad); }), "") << "accepted " << bad;
  EXPECT_EQ(error_of([] { parse_picard("picard:window=0"); }), "--parallel picard: window='0' must be an integer >= 1");
  EXPECT_EQ(error_of([] { parse_picard("picard:tol=-1"); }), "--parallel picard: tol='-1' must be a number > 0");
  EXPECT_EQ(error_of([] { parse_picard("picardx"); }),
            "--parallel 'picardx': expected picard:window=P,tol=T[,max_rounds=R]");
  EXPECT_EQ(error_of([] { parse_picard("picard:size=2"); }),
            "--parallel picard: unknown key 'size' (valid: window, tol, max_rounds)");
}
