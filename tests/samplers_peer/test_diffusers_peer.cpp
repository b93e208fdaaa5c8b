// fewstep's samplers against diffusers' schedulers (issues 3 and 15).
//
// The ctest fixture samplers_peer.oracle runs tools/oracles/diffusers_samplers.py
// with `fewstep samplers --json`: the peer list is every registry sampler
// with a diffusers peer class (registry.h, diffusers_peer: its twin, the
// first alias that is a scheduler class, or the class it is another
// configuration of: plms, dpmpp_3m, dpmpp_2m_sde). The oracle draws random configurations (beta schedule incl.
// trained_betas, prediction type, spacing, steps_offset, 1-50 steps, sampler
// options), runs diffusers on them with a deterministic toy model in float64
// and writes the cases to the JSON file named by FEWSTEP_PEER_CASES. Each
// test here runs one fewstep sampler on its cases through sample() itself,
// as generate does: the seed's unit noise scaled by sample() (the oracle
// starts diffusers at the same point) and the step noise of sample()'s own
// stream, which the oracle hands to diffusers' noise draws (the test first
// checks StepNoise reproduces them). It compares
//   - the initial sample,
//   - the schedule (timesteps, k-sigmas σ/α),
//   - the model's timestep at every call (and so the NFE),
//   - x after every step (the step callback) and the final sample,
// within float64 rounding (tolerances in peer_case.cpp). At least 80% of a
// sampler's cases must be compared in full.
//
// Cases where fewstep deliberately differs from diffusers, or diffusers itself
// fails, are narrowed by the oracle (`compare` = "trajectory" or "schedule")
// with a written reason that this test prints; the main ones:
//   - ddim_prev_timestep, pndm_prev_timestep: diffusers' DDIM and PNDM step to
//     t - T//N, fewstep to the next schedule entry; they agree for "leading"
//     spacing and for "trailing" when N divides T, and only those are run
//     through the sampler;
//   - pndm_short_warm_up: PNDMScheduler raises below 4 steps; fewstep runs;
//   - duplicate_final_sigma: fewstep drops a repeated final sigma;
//   - zero_length_final_step: diffusers' multistep update over h = 0 (up to
//     rounding) is ill-conditioned;
//   - unipc_final_step: diffusers' UniPC returns NaN/Inf on a last step to sigma 0
//     with order > 1 there;
//   - trailing_arange_extra_step: diffusers' trailing spacing yields N+1 timesteps
//     for some T and N (numpy float arange); with Karras/exponential sigmas in
//     the Euler family that extra point also moves the sigma range
//     (trailing_arange_sigma_range: fewstep's run must only be finite);
//   - non_monotone_sigmas: zero-SNR clamping makes diffusers' sigmas rise after a
//     point; fewstep drops such points (schedule compared without them);
//   - single_zero_length_step: 1 step from sigma_min to sigma_min, which fewstep
//     refuses with a one-line error (the test expects that refusal);
//   - karras_one_step: diffusers' UniPC and DEIS end 1 Karras step at sigma_max.
// Where diffusers is wrong on one step only, the oracle corrects that step and
// says so in a `note` printed here: UniPC bh1's last step (B(h) = h = inf times
// a zero residual, NaN; the UniP-1 limit x0 is expected) and DDPM fixed_large's
// last-step noise when its timestep is > 0 (Ho et al. 2020 Alg. 2 adds none).
// Notes also say where the oracle runs diffusers' algorithm with fewstep's
// definition: the DPM family's repeated integer timesteps (fewstep gives the
// model the exact ones), PNDM with v-prediction (each output converted at its
// own point, diffusers #14816), and the Euler family's init_noise_sigma for
// linspace/trailing (σ_max; sample() starts at sqrt(1 + σ_max²)).
// Without diffusers the oracle exits 77 (skipped) and these tests skip; under
// FEWSTEP_REQUIRE_ORACLES=1 (CI) both fail instead.
//
// To rerun by hand: tools/oracles/diffusers_samplers.py --fewstep build/fewstep --out cases.json,
// then FEWSTEP_PEER_CASES=cases.json [FEWSTEP_PEER_ONLY=euler-004,...] test_samplers_peer.
#include "samplers/registry.h"
#include "tests/samplers_peer/peer_case.h"
#include "tests/samplers_peer/toy_model.h"

#include <gtest/gtest.h>

#include "tests/test_env.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>

namespace fewstep::peer {
namespace {

const char* cases_path() {
  const char* p = std::getenv("FEWSTEP_PEER_CASES");
  return p ? p : "";
}

// The oracle's JSON document, read once; null when the file is absent.
const nlohmann::json* oracle_document() {
  static std::unique_ptr<nlohmann::json> doc = [] {
    std::ifstream in(cases_path());
    if (!in) return std::unique_ptr<nlohmann::json>();
    auto j = std::make_unique<nlohmann::json>(nlohmann::json::parse(in));
    return j;
  }();
  return doc.get();
}

#define REQUIRE_ORACLE(doc)                                                                           \
  const nlohmann::json* doc = oracle_document();                                                      \
  FEWSTEP_NEED_ORACLE(doc != nullptr, std::string("no diffusers oracle output at '") + cases_path() + \
                                          "' (FEWSTEP_PEER_CASES): diffusers is absent, so the fixture skipped")

std::vector<int64_t> shape_of(const nlohmann::json& doc) { return doc.at("shape").get<std::vector<int64_t>>(); }

TEST(DiffusersPeer, ToyModelMatchesTheOracle) {
  REQUIRE_ORACLE(doc);
  const nlohmann::json& check = doc->at("toy_check");
  const auto shape = check.at("shape").get<std::vector<int64_t>>();
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x = at::tensor(check.at("x").get<std::vector<double>>(), opts).reshape(shape);
  const at::Tensor want = at::tensor(check.at("out").get<std::vector<double>>(), opts).reshape(shape);
  const at::Tensor t = at::full({shape[0]}, check.at("t").get<double>(), opts);
  // Same formula, same float64 operations up to libm vs. vectorized
  // cos/sin/tanh: a few ulp.
  EXPECT_LE((toy_model(x, t) - want).abs().max().item<double>(), 1e-14);
}

TEST(DiffusersPeer, StepNoiseMatchesTheOraclesDraw) {
  REQUIRE_ORACLE(doc);
  int checked = 0;
  for (const auto& j : doc->at("cases")) {
    if (!j.contains("step_noise") || j["step_noise"].empty()) continue;
    // sample()'s step noise: the seed's generator after its unit-noise draw.
    StepNoise noise(shape_of(*doc), j.at("noise_seed").get<uint64_t>(), at::kDouble, /*skip=*/1);
    for (size_t i = 0; i < j["step_noise"].size(); ++i) {
      const at::Tensor want =
          at::tensor(j["step_noise"][i].get<std::vector<double>>(), at::TensorOptions().dtype(at::kDouble));
      ASSERT_TRUE(at::equal(noise.at_step(static_cast<int64_t>(i)).reshape({-1}), want))
          << j.at("id").get<std::string>() << " step " << i;
    }
    if (++checked == 5) break;
  }
  ASSERT_GT(checked, 0) << "the oracle wrote no stochastic case";
}

// True unless FEWSTEP_PEER_ONLY (a comma list of case ids, e.g.
// "euler-004,euler-007") is set and does not name `id`.
bool selected(const std::string& id) {
  const char* only = std::getenv("FEWSTEP_PEER_ONLY");
  if (!only) return true;
  std::string list = ",";
  list += only;
  list += ",";
  std::string key = ",";
  key += id;
  key += ",";
  return list.find(key) != std::string::npos;
}

// At least this share of each sampler's cases must be compared in full
// (schedule, model calls, trajectory, final sample), not only narrowed.
constexpr double kMinFullShare = 0.8;

// Runs every case of `sampler`; one failure line per failing case.
void check_sampler(const std::string& sampler) {
  REQUIRE_ORACLE(doc);
  const auto shape = shape_of(*doc);
  int compared = 0, narrowed = 0, failed = 0;
  std::map<std::string, int> reasons;  // why cases were narrowed
  for (const auto& j : doc->at("cases")) {
    if (j.at("sampler").get<std::string>() != sampler) continue;
    if (!selected(j.at("id").get<std::string>())) continue;
    const PeerCase parsed = parse_case(j, shape);
    const PeerCase* c = &parsed;
    ++compared;
    std::vector<std::string> problems;
    try {
      const PeerRun run = run_fewstep(parsed);
      c = &expectation_for(parsed, run.timesteps.size(0));
      problems = compare_run(*c, run);
    } catch (const SamplerError& e) {
      // A one-line refusal is the expected outcome of a "refused" case.
      if (parsed.compare != "refused") problems.push_back(std::string("fewstep threw: ") + e.what());
    } catch (const std::exception& e) {
      problems.push_back(std::string("fewstep threw: ") + e.what());
    }
    if (c->compare != "all") {
      ++narrowed;
      ++reasons[c->known_different.substr(0, c->known_different.find(':'))];
      if (c->compare == "refused")
        std::cout << "[ refused  ] " << c->id << " fewstep must refuse it: " << c->known_different << "\n";
      else
        std::cout << "[ narrowed ] " << c->id << " compares " << c->compare << " only: " << c->known_different << "\n";
    }
    if (!c->note.empty()) std::cout << "[ note     ] " << c->id << ": " << c->note << "\n";
    if (problems.empty()) continue;
    ++failed;
    std::string msg;
    for (const auto& p : problems) msg += "\n    " + p;
    ADD_FAILURE() << describe(*c) << msg;
  }
  ASSERT_GT(compared, 0) << "the oracle wrote no case for " << sampler;
  std::cout << "[ summary  ] " << sampler << ": " << compared << " cases, " << narrowed
            << " with a narrowed comparison, " << failed << " failing\n";
  if (std::getenv("FEWSTEP_PEER_ONLY")) return;  // a hand-picked subset says nothing about the share
  std::string why;
  for (const auto& [reason, count] : reasons) why += " " + reason + " x" + std::to_string(count);
  EXPECT_GE(double(compared - narrowed), kMinFullShare * double(compared))
      << sampler << ": only " << compared - narrowed << " of " << compared
      << " cases compared in full (schedule, model calls, trajectory, final sample); narrowed:" << why;
}

// The peer list: every registry sampler with a diffusers peer class
// (registry.h, diffusers_peer: its twin, or the class it is another
// configuration of, as plms of PNDMScheduler), so a new twin is tested
// without editing this file. Known when ctest discovers the tests, before
// the oracle fixture has run.
std::vector<std::string> peer_list() {
  std::vector<std::string> names;
  for (const SamplerInfo& info : sampler_registry())
    if (diffusers_peer(info)) names.push_back(info.name);
  return names;
}

// Every peer has cases, each against its registry peer class, and the
// oracle runs no sampler outside the peer list.
TEST(DiffusersPeer, TheOracleCoversEveryDiffusersPeer) {
  REQUIRE_ORACLE(doc);
  std::map<std::string, std::set<std::string>> classes;  // sampler -> diffusers classes of its cases
  for (const auto& j : doc->at("cases"))
    classes[j.at("sampler").get<std::string>()].insert(j.at("diffusers_class").get<std::string>());
  for (const SamplerInfo& info : sampler_registry())
    if (const auto peer = diffusers_peer(info))
      EXPECT_EQ(classes[info.name], std::set<std::string>{*peer}) << info.name << "'s cases";
  const std::vector<std::string> peers = peer_list();
  for (const auto& [name, used] : classes)
    EXPECT_TRUE(std::find(peers.begin(), peers.end(), name) != peers.end()) << name << " is not a registry peer";
  for (const std::string name : {"pndm", "plms", "deis", "lms", "tcd"})
    EXPECT_TRUE(classes.count(name)) << name << ": issue 15 names it for the peer tests";
}

class DiffusersPeerSampler : public ::testing::TestWithParam<std::string> {};

TEST_P(DiffusersPeerSampler, MatchesDiffusers) { check_sampler(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Registry, DiffusersPeerSampler, ::testing::ValuesIn(peer_list()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace fewstep::peer
