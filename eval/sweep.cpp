// `fewstep sweep` (see sweep.h).
#include "eval/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <map>
#include <optional>
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
#include "eval/sweep_units.h"
#include "dist/group.h"
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

// %g: "0.05", "1e-05".
std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
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

/// One point of a sampler's axis: its step count, or for an adaptive sampler
/// its tolerance (rtol; the steps it ignores are requested as 1).
struct AxisSetting {
  int64_t steps = 0;
  std::optional<double> rtol;
};

/// One unit and where it sits in the sweep.
struct PlannedUnit {
  SweepUnit unit;
  size_t prompt_i = 0;
  uint64_t seed = 0;
  bool reference = false;  ///< the (prompt, seed)'s reference run
  std::string sampler;     ///< swept runs: the sampler and its setting
  AxisSetting setting;
};

/// The sweep's units in the order of the single-process loops: per prompt,
/// per seed, the reference, then every sampler × setting. Each spec holds the
/// unit's settings and the sweep-wide context; each cost is the expected NFE
/// times the rows of a UNet call.
template <typename RequestFor, typename SettingsOf, typename RequestAt>
std::vector<PlannedUnit> plan_units(const SweepOptions& o, const Pipeline& pipe, const GenerateRequest& base,
                                    const SweepReference& reference, bool exact, const RequestFor& request_for,
                                    const SettingsOf& settings_of, const RequestAt& request_at) {
  const nlohmann::json context = {{"model", o.model.empty() ? std::string("(embedded)") : o.model},
                                  {"model_name", pipe.manifest().name},
                                  {"negative_prompt", o.negative_prompt},
                                  {"cfg_scale", base.cfg_scale},
                                  {"width", base.width},
                                  {"height", base.height},
                                  {"timestep_spacing", o.timestep_spacing.value_or("")},
                                  {"device", o.rt.device},
                                  {"dtype", o.rt.dtype},
                                  {"attention", o.rt.attention},
                                  {"fusion", o.rt.fusion}};
  const double rows = pipe.conditional() && base.cfg_scale != 1.0 ? 2.0 : 1.0;
  std::map<std::tuple<std::string, int64_t, std::string>, double> nfe;  // the dry runs, once per setting
  auto cost_of = [&](const GenerateRequest& r) {
    const auto rtol = r.sampler_options.find("rtol");
    auto [it, fresh] =
        nfe.try_emplace({r.sampler, r.steps, rtol == r.sampler_options.end() ? std::string() : rtol->second}, 0.0);
    if (fresh) it->second = expected_nfe(pipe, r);
    return it->second * rows;
  };
  std::vector<PlannedUnit> units;
  for (size_t pi = 0; pi < o.prompts.size(); ++pi)
    for (uint64_t seed : o.seeds) {
      PlannedUnit ref;
      ref.prompt_i = pi;
      ref.seed = seed;
      ref.reference = true;
      ref.unit.spec = {{"kind", "reference"},
                       {"prompt", o.prompts[pi]},
                       {"seed", seed},
                       {"reference", reference.describe()},
                       {"context", context}};
      ref.unit.cost = exact ? 1.0 : cost_of(request_for(reference.sampler, reference.steps, false));
      ref.unit.name();
      units.push_back(ref);
      for (const std::string& sampler : o.samplers)
        for (const AxisSetting& st : settings_of(sampler)) {
          const GenerateRequest r = request_at(sampler, st, true);
          PlannedUnit u;
          u.prompt_i = pi;
          u.seed = seed;
          u.sampler = sampler;
          u.setting = st;
          nlohmann::json picard = nullptr;
          if (r.picard)
            picard = {{"window", r.picard->window}, {"tol", r.picard->tol}, {"max_rounds", r.picard->max_rounds}};
          u.unit.spec = {{"kind", "run"},      {"prompt", o.prompts[pi]}, {"seed", seed},
                         {"sampler", sampler}, {"steps", st.steps},       {"sampler_options", r.sampler_options},
                         {"picard", picard},   {"context", context}};
          u.unit.cost = cost_of(r);
          u.unit.name();
          units.push_back(u);
        }
    }
  return units;
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

std::vector<double> parse_real_list(const std::string& flag, const std::string& text) {
  std::vector<double> out;
  for (const std::string& item : parse_list(flag, text)) {
    const std::optional<double> v = parse_real(item);
    if (!v) throw std::invalid_argument(flag + ": '" + item + "' is not a number");
    out.push_back(*v);
  }
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
  drop_repeats(o.tolerances);
  drop_repeats(o.seeds);
  drop_repeats(o.prompts);
  const bool all_adaptive =
      std::all_of(o.samplers.begin(), o.samplers.end(), [](const auto& n) { return find_sampler(n).adaptive; });
  if (o.steps.empty() && !all_adaptive) throw std::invalid_argument("--steps: the list is empty");
  for (int64_t s : o.steps)
    if (s < 1) throw std::invalid_argument("--steps: must be at least 1, got " + std::to_string(s));
  for (double t : o.tolerances)
    if (!(t > 0)) throw std::invalid_argument("--tolerances: must be above 0, got " + std::to_string(t));
  if (!o.tolerances.empty() &&
      std::none_of(o.samplers.begin(), o.samplers.end(), [](const auto& n) { return find_sampler(n).adaptive; }))
    throw std::invalid_argument("--tolerances: no swept sampler is adaptive (e.g. dpm_adaptive)");
  for (double t : o.tolerances)
    for (const std::string& name : o.samplers)
      if (find_sampler(name).adaptive) try {
          resolve_sampler_options(find_sampler(name), {{"rtol", std::to_string(t)}});
        } catch (const SamplerError& e) {
          throw std::invalid_argument(std::string("--tolerances: ") + e.what());
        }
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

SweepResult run_sweep(SweepOptions o, const SweepProgress& progress, dist::Group* group) {
  std::unique_ptr<dist::Group> own;
  if (!group) own = dist::single_process_group();
  dist::Group& g = group ? *group : *own;
  const bool root = g.rank() == 0;
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

  // Each sampler's axis: its step counts, or for an adaptive sampler its
  // tolerances (rtol; steps are ignored by it and requested as 1).
  using Setting = AxisSetting;
  std::map<std::string, std::vector<Setting>> axes;  // once per sampler, read by every loop below
  for (const std::string& sampler : o.samplers) {
    std::vector<Setting>& out = axes[sampler];
    if (find_sampler(sampler).adaptive) {
      if (o.tolerances.empty()) out.push_back({1, std::nullopt});
      for (double t : o.tolerances) out.push_back({1, t});
    } else {
      for (int64_t n : o.steps) out.push_back({n, std::nullopt});
    }
  }
  auto settings_of = [&](const std::string& sampler) -> const std::vector<Setting>& { return axes.at(sampler); };
  auto request_at = [&](const std::string& sampler, const Setting& st, bool with_picard) {
    GenerateRequest r = request_for(sampler, st.steps, with_picard);
    if (st.rtol) r.sampler_options["rtol"] = format_number(*st.rtol);
    return r;
  };
  size_t columns = 0;  // of the contact sheet, before the reference's
  for (const std::string& s : o.samplers) {
    columns = std::max(columns, settings_of(s).size());
  }

  SweepResult res;
  if (!o.reference.empty()) res.reference = parse_reference(o.reference);
  const std::optional<NoisePoint> exact =
      o.reference.empty() ? exact_reference_start(*pipe) : std::optional<NoisePoint>();
  if (!exact && o.reference.empty()) res.reference = {"unipc", 250};
  // Every request is checked before any work.
  for (const std::string& s : o.samplers)
    for (const Setting& st : settings_of(s)) pipe->check(request_at(s, st, true));
  if (!exact) pipe->check(request_for(res.reference.sampler, res.reference.steps, false));

  // The units, in the order of the single-process loops (the rows follow it).
  const std::vector<PlannedUnit> units =
      plan_units(o, *pipe, base, res.reference, exact.has_value(), request_for, settings_of, request_at);
  const Setting first_setting = settings_of(o.samplers.front()).front();
  const std::vector<int64_t> shape = pipe->sample_shape(base.width, base.height);
  const std::filesystem::path units_dir = o.out / "units";
  std::error_code ec;
  const bool units_dir_existed = std::filesystem::is_directory(units_dir, ec);
  std::filesystem::create_directories(units_dir, ec);
  if (!std::filesystem::is_directory(units_dir, ec))
    throw FileError("--out: cannot create folder " + units_dir.string());
  if (!units_dir_existed) register_created_folder(units_dir);
  // A failed sweep keeps its finished units; units/ goes only when empty.
  struct RemoveIfEmpty {
    std::filesystem::path dir;
    bool armed;
    ~RemoveIfEmpty() {
      std::error_code ignored;
      if (armed) std::filesystem::remove(dir, ignored);  // fails harmlessly unless empty
    }
  } units_guard{units_dir, !units_dir_existed};

  // With --resume, rank 0 decides which units are done (their files hold
  // the same spec) and tells the others, so that every rank plans alike.
  std::map<size_t, UnitResult> results;
  std::vector<uint8_t> done_mask(units.size(), 0);
  if (o.resume && root)
    for (size_t i = 0; i < units.size(); ++i)
      if (auto r = load_unit(o.out, units[i].unit)) {
        results[i] = std::move(*r);
        done_mask[i] = 1;
      }
  if (o.resume) done_mask = g.broadcast_bytes(done_mask, "the list of finished units");
  std::vector<size_t> todo;
  std::vector<double> costs;
  for (size_t i = 0; i < units.size(); ++i)
    if (!done_mask[i]) todo.push_back(i), costs.push_back(units[i].unit.cost);
  const std::vector<int> owner = dist::balance_by_cost(costs, g.world_size());
  std::vector<size_t> mine;
  for (size_t k = 0; k < todo.size(); ++k)
    if (owner[k] == g.rank()) mine.push_back(todo[k]);

  std::map<size_t, Conditioning> conds;  // by prompt index
  auto cond_of = [&](size_t pi) -> const Conditioning& {
    auto it = conds.find(pi);
    if (it == conds.end()) it = conds.emplace(pi, pipe->encode(o.prompts[pi], o.negative_prompt)).first;
    return it->second;
  };
  if (!mine.empty()) {
    // Warm-up, untimed: first calls allocate, load kernels and tune, which
    // would inflate the first unit's wall_ms.
    GenerateRequest r = request_at(o.samplers.front(), first_setting, true);
    r.seed = o.seeds.front();
    pipe->generate(cond_of(0), r);
  }
  std::optional<double> flops_per_row;
  // FLOPs per UNet batch row: they depend on the size and the model only (not on
  // the prompt, the sampler or the steps), so one profiled call serves every row.
  if (root) flops_per_row = unet_flops_per_row(*pipe, cond_of(0), request_at(o.samplers.front(), first_setting, false));

  // This rank's units, each written to units/ as it finishes.
  nlohmann::json finished = nlohmann::json::array();
  int64_t done = 0;
  for (size_t i : mine) {
    g.check_peers();
    const PlannedUnit& p = units[i];
    const at::Tensor noise = seeded_unit_noise(shape, p.seed);  // one unit noise per (prompt, seed)
    UnitResult r;
    r.rank = g.rank();
    if (p.reference && exact) {
      const ReferenceRun ref = analytic_reference(*pipe, *exact, noise);
      r.latents = ref.latents;
      r.image = ref.image;
    } else {
      GenerateRequest rq = p.reference ? request_for(res.reference.sampler, res.reference.steps, false)
                                       : request_at(p.sampler, p.setting, true);
      rq.seed = p.seed;
      rq.init_noise = noise;
      GenerateResult gr = pipe->generate(cond_of(p.prompt_i), rq);
      r.latents = gr.latents;
      r.image = std::move(gr.image);
      r.nfe = gr.stats.nfe;
      r.unet_calls = gr.stats.unet_calls;
      r.unet_rows = gr.stats.unet_rows;
      r.wall_ms = gr.stats.total_ms;
    }
    std::vector<uint8_t> bytes = encode_unit(p.unit, r);
    write_file_atomic(unit_path(o.out, p.unit), bytes, true);
    finished.push_back({{"i", i}, {"unit", nlohmann::json::binary(std::move(bytes))}});
    if (progress) progress(++done, static_cast<int64_t>(mine.size()));
  }
  // Rank 0 gathers the finished units (after uneven work: wait first).
  g.wait_all("sweep units");
  const std::vector<std::vector<uint8_t>> parts =
      g.gather_bytes(nlohmann::json::to_cbor(finished), "the sweep's units");
  if (!root) {
    units_guard.armed = false;
    return res;
  }
  for (size_t r = 0; r < parts.size(); ++r)
    for (const auto& e : nlohmann::json::from_cbor(parts[r])) {
      const size_t i = e.at("i").get<size_t>();
      auto u = decode_unit(e.at("unit").get_binary(), units.at(i).unit, "rank " + std::to_string(r) + "'s unit");
      if (!u)
        throw std::runtime_error("sweep: rank " + std::to_string(r) + " sent a unit that does not match the plan");
      results[i] = std::move(*u);
    }

  std::vector<std::pair<std::filesystem::path, std::vector<uint8_t>>> outputs;
  size_t i = 0;
  for (size_t pi = 0; pi < o.prompts.size(); ++pi) {
    const std::string& prompt = o.prompts[pi];
    for (uint64_t seed : o.seeds) {
      const UnitResult& ref = results.at(i++);
      std::vector<Image> tiles;
      for (const std::string& sampler : o.samplers) {
        const SamplerInfo& info = find_sampler(sampler);
        size_t tile = 0;
        for (const Setting& st : settings_of(sampler)) {
          const UnitResult& u = results.at(i++);
          const GenerateRequest r = request_at(sampler, st, true);
          SweepRow row;
          row.prompt = prompt;
          row.sampler = sampler;
          row.steps = info.adaptive ? 0 : st.steps;
          if (info.adaptive) row.rtol = resolve_sampler_options(info, r.sampler_options).real("rtol");
          row.seed = seed;
          row.nfe = u.nfe;
          row.stochastic = draws_step_noise(r);
          row.unet_calls = u.unet_calls;
          if (flops_per_row) row.unet_flops = *flops_per_row * double(u.unet_rows);
          row.wall_ms = u.wall_ms;
          row.rmse_latent = rmse(u.latents, ref.latents);
          row.rmse = rmse(u.image, ref.image) / 255.0;
          row.psnr_db = psnr_db(row.rmse, 1.0);
          row.ssim = ssim(u.image, ref.image);
          row.rank = u.rank;
          res.rows.push_back(row);
          tiles.push_back(u.image);  // an adaptive sampler's tolerances fill the columns in order
          ++tile;
        }
        for (; tile < columns; ++tile) tiles.push_back(Image{});
        tiles.push_back(ref.image);
      }
      std::vector<std::string> cols;
      for (size_t k = 0; k < columns; ++k) cols.push_back(k < o.steps.size() ? std::to_string(o.steps[k]) : "");
      cols.push_back("ref");
      const std::string title = (prompt.empty() ? std::string("(no prompt)") : "\"" + prompt + "\"") + "  seed " +
                                std::to_string(seed) + "  columns: steps; ref = " + res.reference.describe();
      std::vector<std::string> row_labels;
      for (const std::string& sampler : o.samplers) {
        std::string label = sampler;
        if (find_sampler(sampler).adaptive) {
          label += " (rtol";
          for (const Setting& st : settings_of(sampler))
            label += " " + (st.rtol ? format_number(*st.rtol) : std::string("default"));
          label += ")";
        }
        row_labels.push_back(label);
      }
      const Canvas sheet = draw_contact_sheet(row_labels, cols, tiles, ref.image.width, ref.image.height, title);
      outputs.emplace_back(o.out / sheet_name(o, pi, seed), canvas_png(sheet, title));
    }
  }
  outputs.emplace_back(o.out / "results.csv", bytes_of(format_results_csv(res.rows)));
  outputs.emplace_back(o.out / "quality.png", canvas_png(quality_plot(res.rows), "fewstep sweep: quality against NFE"));
  outputs.emplace_back(o.out / "summary.md", bytes_of(format_summary_md(res.rows, res.reference, m.name)));
  for (const auto& [path, bytes] : outputs) res.files.push_back(write_file_atomic(path, bytes, true));
  units_guard.armed = false;
  return res;
}

}  // namespace fewstep
