// `fewstep sweep` (see sweep.h).
#include "eval/sweep.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "image/contact_sheet.h"
#include "image/png.h"
#include "io/files.h"
#include "pipeline/tensor_io.h"
#include "eval/metrics.h"
#include "pipeline/model_source.h"
#include "image/plot.h"
#include "eval/profile.h"
#include "common/parse.h"
#include "eval/sweep_internal.h"
#include "samplers/registry.h"
#include "samplers/schedule.h"
#include "unet/analytic.h"

namespace fewstep {
namespace {

int64_t parse_int(const std::string& flag, const std::string& item) {
  const auto v = parse_integer(item);
  if (!v) throw std::invalid_argument(flag + ": '" + item + "' is not an integer");
  return *v;
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<uint8_t> canvas_png(const Canvas& c, const std::string& description) {
  return encode_png(c.image(), "Description", description);
}

/// The reference's final sample and image for one (prompt, seed).
struct ReferenceRun {
  at::Tensor latents;
  Image image;
};

/// Where the exact reference starts for an analytic model: the
/// highest-noise training point. nullopt when the model is not analytic or
/// has no exact solution from there (the GMM's RK4 reference needs alpha > 0).
std::optional<NoisePoint> exact_reference_start(Pipeline& pipe) {
  auto* am = dynamic_cast<AnalyticModel*>(&pipe.model());
  if (!am) return std::nullopt;
  const SchedulerConfig& cfg = am->scheduler_config();
  const double t_max = is_flow(cfg) ? double(cfg.num_train_timesteps) : double(cfg.num_train_timesteps - 1);
  const NoisePoint from = am->point_at_timestep(t_max);
  if (am->spec().kind != "gaussian" && from.alpha <= 0) return std::nullopt;
  return from;
}

/// The analytic model's probability-flow ODE solution from `from` to sigma 0
/// for x = unit_noise · sqrt(alpha² + sigma²) (initial_noise_scale).
ReferenceRun analytic_reference(Pipeline& pipe, const NoisePoint& from, const at::Tensor& unit_noise) {
  auto& am = dynamic_cast<AnalyticModel&>(pipe.model());
  const NoisePoint to{0.0, 1.0, 0.0};
  const at::Tensor x = unit_noise.to(at::kDouble) * std::sqrt(from.alpha * from.alpha + from.sigma * from.sigma);
  ReferenceRun r;
  r.latents = am.ode_solution(x, from, to);
  r.image = to_rgb8(r.latents.to(at::kFloat));
  return r;
}

std::string sheet_name(const SweepOptions& o, size_t prompt_i, uint64_t seed) {
  if (o.prompts.size() == 1 && o.seeds.size() == 1) return "grid.png";
  return "grid-p" + std::to_string(prompt_i) + "-s" + std::to_string(seed) + ".png";
}

Canvas quality_plot(const std::vector<SweepRow>& rows) {
  const std::vector<SweepSetting> settings = aggregate_settings(rows);
  std::vector<std::string> order;
  for (const SweepSetting& s : settings)
    if (std::find(order.begin(), order.end(), s.sampler) == order.end()) order.push_back(s.sampler);
  PlotPanel psnr{"PSNR vs reference", "NFE (log scale)", "PSNR (dB)", true, false, {}};
  PlotPanel err{"RMSE vs reference", "NFE (log scale)", "RMSE, model space (log)", true, true, {}};
  for (const std::string& name : order) {
    std::vector<SweepSetting> mine;
    for (const SweepSetting& s : settings)
      if (s.sampler == name) mine.push_back(s);
    std::sort(mine.begin(), mine.end(), [](const auto& a, const auto& b) { return a.nfe < b.nfe; });
    PlotSeries p{name, {}, {}}, e{name, {}, {}};
    for (const SweepSetting& s : mine) {
      p.x.push_back(s.nfe), p.y.push_back(s.psnr_db);
      e.x.push_back(s.nfe), e.y.push_back(s.rmse_latent);
    }
    psnr.series.push_back(p);
    err.series.push_back(e);
  }
  return draw_plot({psnr, err});
}

}  // namespace

std::string SweepReference::describe() const {
  return sampler.empty() ? std::string("exact ODE solution") : sampler + ":" + std::to_string(steps);
}

std::vector<std::string> parse_list(const std::string& flag, const std::string& text) {
  const std::vector<std::string> out = split_list(text, ',');
  if (out.empty()) throw std::invalid_argument(flag + ": the list is empty");
  if (std::any_of(out.begin(), out.end(), [](const std::string& item) { return item.empty(); }))
    throw std::invalid_argument(flag + ": empty item in '" + text + "'");
  return out;
}

std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& text) {
  std::vector<int64_t> out;
  for (const std::string& item : parse_list(flag, text)) out.push_back(parse_int(flag, item));
  return out;
}

SweepReference parse_reference(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw std::invalid_argument("--reference: '" + text + "' is not SAMPLER:STEPS (e.g. unipc:250)");
  SweepReference r;
  try {
    r.sampler = find_sampler(trim(text.substr(0, colon))).name;
  } catch (const SamplerError& e) {
    throw std::invalid_argument(std::string("--reference: ") + e.what());
  }
  r.steps = parse_int("--reference", trim(text.substr(colon + 1)));
  if (r.steps < 1) throw std::invalid_argument("--reference: steps must be at least 1");
  return r;
}

void check_sweep_options(SweepOptions& o) {
  if (o.samplers.empty()) throw std::invalid_argument("--samplers: the list is empty");
  for (std::string& name : o.samplers) {
    try {
      name = find_sampler(name).name;
    } catch (const SamplerError& e) {
      throw std::invalid_argument(std::string("--samplers: ") + e.what());
    }
  }
  // One run per setting: repeats (also an alias beside its name) are dropped, first kept.
  auto drop_repeats = [](auto& v) {
    for (size_t i = 0; i < v.size(); ++i)
      v.erase(std::remove(v.begin() + std::ptrdiff_t(i) + 1, v.end(), v[i]), v.end());
  };
  drop_repeats(o.samplers);
  drop_repeats(o.steps);
  drop_repeats(o.seeds);
  drop_repeats(o.prompts);
  if (o.steps.empty()) throw std::invalid_argument("--steps: the list is empty");
  for (int64_t s : o.steps)
    if (s < 1) throw std::invalid_argument("--steps: must be at least 1, got " + std::to_string(s));
  if (o.seeds.empty()) throw std::invalid_argument("--seeds: the list is empty");
  if (o.prompts.empty()) o.prompts.push_back("");
  if (!o.reference.empty()) parse_reference(o.reference);
  // Each --sampler-option key must belong to at least one swept sampler, and
  // its value must be valid for every sampler that has it.
  for (const auto& [key, value] : o.sampler_options) {
    bool used = false;
    for (const std::string& name : o.samplers) {
      const SamplerInfo& info = find_sampler(name);
      if (std::none_of(info.options.begin(), info.options.end(), [&](const auto& op) { return op.name == key; }))
        continue;
      used = true;
      try {
        resolve_sampler_options(info, {{key, value}});
      } catch (const SamplerError& e) {
        throw std::invalid_argument(std::string("--sampler-option: ") + e.what());
      }
    }
    if (!used) throw std::invalid_argument("--sampler-option: '" + key + "' is not an option of any swept sampler");
  }
  if (o.out.empty()) throw std::invalid_argument("--out: an output folder is required");
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (ec || !std::filesystem::is_directory(o.out))
    throw FileError("--out: cannot create folder " + o.out.string() + (ec ? ": " + ec.message() : ""));
  try {
    check_writable(o.out / "results.csv");
  } catch (const FileError& e) {
    throw FileError(std::string("--out: ") + e.what());
  }
}

SweepResult run_sweep(SweepOptions o, const SweepProgress& progress) {
  check_sweep_options(o);
  const std::string model = o.model.empty() ? default_model_dir() : o.model;
  std::unique_ptr<Pipeline> pipe = Pipeline::load(model, o.rt);
  const ModelManifest& m = pipe->manifest();

  GenerateRequest base = pipe->request_with_defaults("", std::nullopt, o.cfg_scale, o.width, o.height);
  base.timestep_spacing = o.timestep_spacing;
  auto request_for = [&](const std::string& sampler, int64_t steps, bool with_picard) {
    GenerateRequest r = base;
    r.sampler = sampler;
    r.steps = steps;
    const SamplerInfo& info = find_sampler(sampler);
    for (const auto& [key, value] : o.sampler_options)
      if (std::any_of(info.options.begin(), info.options.end(), [&](const auto& op) { return op.name == key; }))
        r.sampler_options[key] = value;
    if (with_picard) r.picard = o.picard;
    return r;
  };

  SweepResult res;
  if (!o.reference.empty()) res.reference = parse_reference(o.reference);
  const std::optional<NoisePoint> exact =
      o.reference.empty() ? exact_reference_start(*pipe) : std::optional<NoisePoint>();
  if (!exact && o.reference.empty()) res.reference = {"unipc", 250};
  // Every request is checked before any work.
  for (const std::string& s : o.samplers)
    for (int64_t n : o.steps) pipe->check(request_for(s, n, true));
  if (!exact) pipe->check(request_for(res.reference.sampler, res.reference.steps, false));

  const int64_t per_seed = int64_t(o.samplers.size() * o.steps.size()) + 1;
  const int64_t total = int64_t(o.prompts.size() * o.seeds.size()) * per_seed;
  int64_t done = 0;
  const std::vector<int64_t> shape = pipe->sample_shape(base.width, base.height);
  const int64_t fewest_steps = *std::min_element(o.steps.begin(), o.steps.end());
  std::optional<double> flops_per_row;
  {
    const Conditioning first = pipe->encode(o.prompts.front(), o.negative_prompt);
    // Warm-up, untimed: first calls allocate, load kernels and tune, which
    // would inflate the first row's wall_ms.
    GenerateRequest r = request_for(o.samplers.front(), fewest_steps, true);
    r.seed = o.seeds.front();
    pipe->generate(first, r);
    // FLOPs per UNet batch row: they depend on the size and the model only (not on
    // the prompt, the sampler or the steps), so one profiled call serves every row.
    flops_per_row = unet_flops_per_row(*pipe, first, request_for(o.samplers.front(), fewest_steps, false));
  }
  std::vector<std::pair<std::filesystem::path, std::vector<uint8_t>>> outputs;
  for (size_t pi = 0; pi < o.prompts.size(); ++pi) {
    const std::string& prompt = o.prompts[pi];
    const Conditioning cond = pipe->encode(prompt, o.negative_prompt);
    for (uint64_t seed : o.seeds) {
      // One unit noise per (prompt, seed), shared by every combination.
      const at::Tensor noise = seeded_unit_noise(shape, seed);
      ReferenceRun ref;
      if (exact) {
        ref = analytic_reference(*pipe, *exact, noise);
      } else {
        GenerateRequest r = request_for(res.reference.sampler, res.reference.steps, false);
        r.seed = seed;
        r.init_noise = noise;
        GenerateResult g = pipe->generate(cond, r);
        ref = {g.latents, g.image};
      }
      if (progress) progress(++done, total);
      std::vector<Image> tiles;
      for (const std::string& sampler : o.samplers) {
        for (int64_t steps : o.steps) {
          GenerateRequest r = request_for(sampler, steps, true);
          r.seed = seed;
          r.init_noise = noise;
          const GenerateResult g = pipe->generate(cond, r);
          SweepRow row;
          row.prompt = prompt;
          row.sampler = sampler;
          row.steps = steps;
          row.seed = seed;
          row.nfe = g.stats.nfe;
          row.stochastic = draws_step_noise(r);
          row.unet_calls = g.stats.unet_calls;
          if (flops_per_row) row.unet_flops = *flops_per_row * double(g.stats.unet_rows);
          row.wall_ms = g.stats.total_ms;
          row.rmse_latent = rmse(g.latents, ref.latents);
          row.rmse = rmse(g.image, ref.image) / 255.0;
          row.psnr_db = psnr_db(row.rmse, 1.0);
          row.ssim = ssim(g.image, ref.image);
          res.rows.push_back(row);
          tiles.push_back(g.image);
          if (progress) progress(++done, total);
        }
        tiles.push_back(ref.image);
      }
      std::vector<std::string> cols;
      for (int64_t steps : o.steps) cols.push_back(std::to_string(steps));
      cols.push_back("ref");
      const std::string title = (prompt.empty() ? std::string("(no prompt)") : "\"" + prompt + "\"") + "  seed " +
                                std::to_string(seed) + "  columns: steps; ref = " + res.reference.describe();
      const Canvas sheet = draw_contact_sheet(o.samplers, cols, tiles, ref.image.width, ref.image.height, title);
      outputs.emplace_back(o.out / sheet_name(o, pi, seed), canvas_png(sheet, title));
    }
  }
  outputs.emplace_back(o.out / "results.csv", bytes_of(format_results_csv(res.rows)));
  outputs.emplace_back(o.out / "quality.png", canvas_png(quality_plot(res.rows), "fewstep sweep: quality against NFE"));
  outputs.emplace_back(o.out / "summary.md", bytes_of(format_summary_md(res.rows, res.reference, m.name)));
  for (const auto& [path, bytes] : outputs) res.files.push_back(write_file_atomic(path, bytes, true));
  return res;
}

}  // namespace fewstep
