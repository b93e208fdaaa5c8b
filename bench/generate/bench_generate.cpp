// bench/generate: one full generation (prompt encoding, sampling with CFG,
// VAE decoding when the model has one, 8-bit conversion) per step count, the
// number a user waits for. Also reports ms per step and the sampling share.
// Prints a table; writes JSON (--json). Harness: bench/harness.h.
#include "bench/harness.h"
#include "pipeline/pipeline.h"
#include "eval/sweep.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <torch/headeronly/version.h>

namespace {

struct Options {
  std::string model = std::string(FEWSTEP_TEST_MODELS) + "/tiny-latent";
  std::string device = "cpu", dtype = "fp32", attention = "fused";
  std::string sampler = "dpmpp_2m", steps = "1,4,8,20";
  int threads = 0, warmup = 1, repeats = 5;
  std::string json = "generate.json";
};

int run(const Options& opt) {
  fewstep::RuntimeOptions rt;
  rt.device = opt.device;
  rt.dtype = opt.dtype;
  rt.threads = opt.threads;
  rt.attention = opt.attention;
  auto pipe = fewstep::Pipeline::load(opt.model, rt);
  const auto& m = pipe->manifest();
  fewstep::bench::ResultTable table;
  for (int64_t steps : fewstep::parse_int_list("--steps", opt.steps)) {
    fewstep::GenerateRequest req;
    req.sampler = opt.sampler;
    req.steps = steps;
    req.cfg_scale = m.defaults.cfg_scale;
    req.width = m.defaults.width;
    req.height = m.defaults.height;
    pipe->check(req);
    fewstep::GenerateStats last;
    const fewstep::bench::Timing tm = fewstep::bench::time_ms(
        [&](int i) {
          req.seed = uint64_t(i);  // a new seed per call: new noise, as users see it
          last = pipe->generate(pipe->encode("a red apple", ""), req).stats;
        },
        pipe->device(), {.warmup = opt.warmup, .repeats = opt.repeats});
    table.add({{"model", m.name},
               {"device", opt.device},
               {"sampler", opt.sampler},
               {"steps", steps},
               {"nfe", last.nfe},
               {"unet_rows", last.unet_rows},
               {"median_ms", tm.median_ms},
               {"ms_per_step", tm.median_ms / double(steps)},
               {"sampling_share", last.total_ms > 0 ? last.sampling_ms / last.total_ms : 0.0},
               {"cpu_ms", tm.cpu_median_ms}});
  }
  nlohmann::ordered_json meta = fewstep::bench::run_meta("generate");
  meta.update({{"model", opt.model}, {"dtype", opt.dtype}, {"attention", opt.attention}, {"repeats", opt.repeats}});
  table.report(opt.json, meta);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"bench_generate: one full generation per step count"};
  app.add_option("--model", opt.model, "model package folder or analytic:<name>")->capture_default_str();
  app.add_option("--device", opt.device, "cpu or cuda")->capture_default_str();
  app.add_option("--dtype", opt.dtype, "fp32, fp16 or bf16")->capture_default_str();
  app.add_option("--attention", opt.attention, "fused or native")->capture_default_str();
  app.add_option("--sampler", opt.sampler, "sampler name")->capture_default_str();
  app.add_option("--steps", opt.steps, "comma list of step counts")->capture_default_str();
  app.add_option("--threads", opt.threads, "intra-op threads (0 = all cores)")->capture_default_str();
  app.add_option("--warmup", opt.warmup, "untimed generations")->capture_default_str();
  app.add_option("--repeats", opt.repeats, "timed generations (median reported)")->capture_default_str();
  app.add_option("--json", opt.json, "JSON output file")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::cerr << "bench_generate: error: " << e.what() << "\n";
    return 1;
  }
}
