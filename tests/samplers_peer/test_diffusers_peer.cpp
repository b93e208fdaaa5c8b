// fewstep's samplers against diffusers' schedulers (issue 3, "Against a peer").
//
// The ctest fixture samplers_peer.oracle runs tools/oracles/diffusers_samplers.py,
// which draws random configurations (beta schedule incl. trained_betas,
// prediction type, spacing, steps_offset, 1-50 steps, sampler options), runs
// diffusers on them with a deterministic toy model in float64 and writes the
// cases to the JSON file named by FEWSTEP_PEER_CASES. Each test here runs one
// fewstep sampler on its cases and compares
//   - the schedule (timesteps, k-sigmas σ/α),
//   - the model's timestep at every call (and so the NFE),
//   - x after every step (the step callback) and the final sample,
// within float64 rounding (tolerances in peer_case.cpp).
//
// Stochastic samplers (ddim with eta > 0, ddpm, euler_ancestral, dpmpp_2m_sde,
// lcm) get identical noise on both sides: the oracle hands diffusers' noise
// draws the values StepNoise produces for the same seed (float64), and the test
// first checks that StepNoise reproduces them.
//
// Cases where fewstep deliberately differs from diffusers, or diffusers itself
// fails, are narrowed by the oracle (`compare` = "trajectory" or "schedule")
// with a written reason that this test prints; the main ones:
//   - ddim_prev_timestep: diffusers' DDIM steps to t - T//N, fewstep to the next
//     schedule entry; they agree for "leading" spacing and for "trailing" when
//     N divides T, and only those are run through the sampler;
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
//   - unipc_karras_one_step: diffusers' UniPC ends 1 Karras step at sigma_max.
// Where diffusers is wrong on one step only, the oracle corrects that step and
// says so in a `note` printed here: UniPC bh1's last step (B(h) = h = inf times
// a zero residual, NaN; the UniP-1 limit x0 is expected) and DDPM fixed_large's
// last-step noise when its timestep is > 0 (Ho et al. 2020 Alg. 2 adds none).
// Where diffusers' DPM-family integer timesteps (Karras/exponential sigmas)
// repeat, fewstep gives the model the exact timesteps at those points (no
// duplicate timesteps, issue 3); the oracle feeds diffusers' model the same
// values there (its update reads only sigmas once the begin index is set), so
// the whole run is still compared, and says so in a `note`.
// Without diffusers the oracle exits 77 (skipped) and these tests skip.
//
// To rerun by hand: tools/oracles/diffusers_samplers.py --out cases.json, then
// FEWSTEP_PEER_CASES=cases.json [FEWSTEP_PEER_ONLY=euler-004,...] test_samplers_peer.
#include "samplers/registry.h"
#include "tests/samplers_peer/peer_case.h"
#include "tests/samplers_peer/toy_model.h"

#include <gtest/gtest.h>

#include "tests/test_env.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
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
    StepNoise noise(shape_of(*doc), j.at("noise_seed").get<uint64_t>() + 1, at::kDouble);
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

// Runs every case of `sampler`; one failure line per failing case.
void check_sampler(const std::string& sampler) {
  REQUIRE_ORACLE(doc);
  const auto shape = shape_of(*doc);
  int compared = 0, narrowed = 0, failed = 0;
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
}

TEST(DiffusersPeer, AliasesNameTheDiffusersClasses) {
  // The alias table: each diffusers class resolves to its twin.
  const std::pair<const char*, const char*> aliases[] = {
      {"DDIMScheduler", "ddim"},
      {"DDPMScheduler", "ddpm"},
      {"EulerDiscreteScheduler", "euler"},
      {"EulerAncestralDiscreteScheduler", "euler_ancestral"},
      {"HeunDiscreteScheduler", "heun"},
      {"DPMSolverMultistepScheduler", "dpmpp_2m"},
      {"DPMSolverSinglestepScheduler", "dpm_solver"},
      {"UniPCMultistepScheduler", "unipc"},
      {"LCMScheduler", "lcm"},
  };
  for (const auto& [cls, name] : aliases) {
    try {
      EXPECT_EQ(find_sampler(cls).name, name) << cls;
    } catch (const std::exception& e) {
      ADD_FAILURE() << cls << ": " << e.what();
    }
  }
}

// One test per sampler with a diffusers twin.
TEST(DiffusersPeer, ddim) { check_sampler("ddim"); }
TEST(DiffusersPeer, ddpm) { check_sampler("ddpm"); }
TEST(DiffusersPeer, euler) { check_sampler("euler"); }
TEST(DiffusersPeer, euler_ancestral) { check_sampler("euler_ancestral"); }
TEST(DiffusersPeer, heun) { check_sampler("heun"); }
TEST(DiffusersPeer, dpmpp_2m) { check_sampler("dpmpp_2m"); }
TEST(DiffusersPeer, dpmpp_3m) { check_sampler("dpmpp_3m"); }
TEST(DiffusersPeer, dpmpp_2m_sde) { check_sampler("dpmpp_2m_sde"); }
TEST(DiffusersPeer, dpm_solver) { check_sampler("dpm_solver"); }
TEST(DiffusersPeer, unipc) { check_sampler("unipc"); }
TEST(DiffusersPeer, lcm) { check_sampler("lcm"); }

}  // namespace
}  // namespace fewstep::peer
