// `fewstep generate`: text to PNG.
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "cli/common.h"
#include "common/parse.h"
#include "image/png.h"
#include "io/files.h"
#include "pipeline/parameters.h"
#include "pipeline/tensor_io.h"
#include "pipeline/model_source.h"
#include "samplers/registry.h"

namespace fewstep::cli {
namespace {

struct GenerateOptions {
  SharedFlags f;
  std::string seed = "-1";
  int64_t batch_count = 1;
  std::string parallel;
  std::string init_noise, save_latents, stats_json, out;
  bool overwrite = false, quiet = false;
  int64_t upscale = 1;
  std::string upscale_filter = "nearest";
};

/// --seed: "-1" (random) or an integer in [0, 2^64 - 1]; anything else is refused
/// rather than clamped, so that two different seeds never give one image.
uint64_t parse_seed(const std::string& text) {
  if (trim(text) == "-1") return random_seed();
  const auto v = parse_unsigned(text);
  if (!v)
    throw std::invalid_argument("--seed: '" + text +
                                "' is not -1 (random) or an integer from 0 to 18446744073709551615");
  return *v;
}

/// Where image `seed` goes: --out as given (".png" added when it has no
/// extension), with "-<seed>" before the extension for -b N; default
/// fewstep-<seed>.png. Throws std::invalid_argument for another extension.
std::filesystem::path output_path(const GenerateOptions& o, uint64_t seed) {
  const std::string seed_s = std::to_string(seed);
  if (o.out.empty()) return "fewstep-" + seed_s + ".png";
  std::filesystem::path p(o.out);
  std::string ext = p.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!ext.empty() && ext != ".png")
    throw std::invalid_argument("--out: fewstep writes PNG files; '" + o.out + "' has the extension " +
                                p.extension().string());
  if (o.batch_count == 1) return ext.empty() ? std::filesystem::path(o.out + ".png") : p;
  return p.parent_path() / (p.stem().string() + "-" + seed_s + ".png");
}

int run_generate(GenerateOptions& o) {
  // Everything that can be checked without the model is checked first.
  const SharedFlags& f = o.f;
  const SamplerOptions sampler_opts = parse_option_items(f.sampler_options);
  const std::optional<int64_t> steps = single_steps(f);
  std::optional<PicardOptions> picard;
  if (!o.parallel.empty()) picard = parse_picard(o.parallel);
  if (o.batch_count < 1) throw std::invalid_argument("--batch-count: must be at least 1");
  if (o.upscale < 1 || o.upscale > 64) throw std::invalid_argument("--upscale: must be between 1 and 64");
  const uint64_t seed0 = parse_seed(o.seed);
  std::vector<std::filesystem::path> outs;
  for (int64_t i = 0; i < o.batch_count; ++i) {
    outs.push_back(output_path(o, seed0 + static_cast<uint64_t>(i)));
    check_writable(outs.back());
  }
  if (!o.save_latents.empty()) check_writable(o.save_latents);
  if (!o.stats_json.empty()) check_writable(o.stats_json);
  at::Tensor init_noise;
  if (!o.init_noise.empty()) init_noise = read_npy_float32(o.init_noise);

  const std::string model = f.model.empty() ? default_model_dir() : f.model;
  auto pipe = Pipeline::load(model, f.rt);
  const ModelManifest& m = pipe->manifest();

  GenerateRequest req = pipe->request_with_defaults(f.sampler, steps, f.cfg_scale, f.width, f.height);
  req.timestep_spacing = spacing_of(f);
  req.sampler_options = sampler_opts;
  req.picard = picard;
  pipe->check(req);
  req.sampler = find_sampler(req.sampler).name;  // aliases (diffusers class names) resolved for the records
  if (!pipe->conditional()) {
    // What had no effect is neither used nor recorded.
    if (!f.prompt.empty() || !f.negative_prompt.empty() || f.cfg_scale)
      std::cerr << "warning: " << m.name
                << " is unconditional: --prompt, --negative-prompt and --cfg-scale are ignored\n";
    o.f.prompt.clear();
    o.f.negative_prompt.clear();
    req.cfg_scale = 1.0;
  }
  if (m.guidance.mode == "embedded") {
    // LCM: w enters the UNet through timestep_cond; there is no unconditional pass.
    if (!o.quiet)
      std::cerr << "note: " << m.name << " has embedded guidance (LCM): --cfg-scale sets w = " << req.cfg_scale
                << " in the UNet's guidance embedding; one UNet call per step, no unconditional pass\n";
    if (!f.negative_prompt.empty())
      std::cerr << "warning: " << m.name << " has embedded guidance: --negative-prompt is ignored\n";
    o.f.negative_prompt.clear();
  }
  if (init_noise.defined()) {
    auto shape = pipe->sample_shape(req.width, req.height);
    shape[0] = o.batch_count;
    if (init_noise.sizes() != at::IntArrayRef(shape)) {
      std::string want;
      for (auto d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      throw std::invalid_argument(o.init_noise + ": shape must be [" + want + "] (batch count, channels, h, w)");
    }
  }

  const auto t_enc = std::chrono::steady_clock::now();
  Conditioning cond = pipe->encode(f.prompt, f.negative_prompt);
  const double encode_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_enc).count();

  GenerateStats total;
  total.encode_ms = encode_ms;
  std::vector<at::Tensor> latents;
  std::vector<std::vector<uint8_t>> pngs;
  for (int64_t i = 0; i < o.batch_count; ++i) {
    req.seed = seed0 + static_cast<uint64_t>(i);
    if (init_noise.defined()) req.init_noise = init_noise.narrow(0, i, 1);
    ProgressBar bar("seed " + std::to_string(req.seed), req.steps, !o.quiet && stderr_is_tty());
    req.on_step = [&bar](int64_t i_step, int64_t, const at::Tensor&) { bar.update(i_step + 1); };
    GenerateResult r = pipe->generate(cond, req);
    bar.finish();
    const Image img = upscale(r.image, static_cast<int>(o.upscale), o.upscale_filter == "smooth");
    pngs.push_back(
        encode_png(img, "parameters", format_parameters(f.prompt, f.negative_prompt, req, m.name, m.guidance.mode)));
    latents.push_back(r.latents);
    total.sampling_ms += r.stats.sampling_ms;
    total.decode_ms += r.stats.decode_ms;
    total.total_ms += r.stats.total_ms;
    total.nfe += r.stats.nfe;
    total.unet_calls += r.stats.unet_calls;
    total.unet_rows += r.stats.unet_rows;
    total.picard_rounds += r.stats.picard_rounds;
  }
  // Outputs are written only once every image succeeded: no partial results.
  for (size_t i = 0; i < pngs.size(); ++i) {
    auto written = write_file_atomic(outs[i], pngs[i], o.overwrite);
    if (!o.quiet) {
      std::cout << "wrote " << written.string() << " (seed " << seed0 + i << ")";
      if (written != outs[i]) std::cout << "; " << outs[i].string() << " exists, use --overwrite to replace it";
      std::cout << "\n";
    }
  }
  if (!o.save_latents.empty()) write_file_atomic(o.save_latents, encode_npy(at::cat(latents)), true);
  if (!o.stats_json.empty()) {
    auto ms = [](double v) { return std::round(v * 1000.0) / 1000.0; };  // microsecond resolution
    nlohmann::json j = {{"load_ms", ms(pipe->load_ms())},
                        {"encode_ms", ms(total.encode_ms)},
                        {"sampling_ms", ms(total.sampling_ms)},
                        {"decode_ms", ms(total.decode_ms)},
                        {"total_ms", ms(pipe->load_ms() + total.encode_ms + total.total_ms)},
                        {"nfe", total.nfe},
                        {"unet_calls", total.unet_calls},
                        {"unet_rows", total.unet_rows},
                        {"picard_rounds", total.picard_rounds},
                        {"guidance", m.guidance.mode},
                        {"steps", req.steps},
                        {"sampler", req.sampler},
                        {"seed", seed0},
                        {"batch_count", o.batch_count}};
    std::string s = j.dump(2) + "\n";
    write_file_atomic(o.stats_json, std::vector<uint8_t>(s.begin(), s.end()), true);
  }
  return 0;
}

}  // namespace

void register_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate images from a text prompt");
  add_shared_flags(*cmd, o->f, Axis::one);
  cmd->add_option("--seed,-s", o->seed, "random seed, 0 to 2^64-1; -1 = random (the default), printed");
  cmd->add_option("--batch-count,-b", o->batch_count, "images to make, with seeds seed, seed+1, ...");
  cmd->add_option("--parallel", o->parallel, "Picard-parallel sampling: picard:window=P,tol=T[,max_rounds=R]");
  cmd->add_option("--init-noise", o->init_noise, "unit-variance noise .npy, float32 [N, C, h, w]");
  cmd->add_option("--save-latents", o->save_latents, "write the final samples as .npy [N, C, h, w]");
  cmd->add_option("--stats-json", o->stats_json, "write timings and model-call counts as JSON");
  cmd->add_option("--out,-o", o->out, "output .png (default fewstep-<seed>.png); with -b N: NAME-<seed>.png");
  cmd->add_flag("--overwrite", o->overwrite, "replace existing output files");
  cmd->add_option("--upscale", o->upscale, "enlarge the saved image by this integer factor");
  cmd->add_option("--upscale-filter", o->upscale_filter, "nearest or smooth")
      ->check(CLI::IsMember({"nearest", "smooth"}));
  cmd->add_flag("--quiet,-q", o->quiet, "print nothing but errors");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace fewstep::cli
