// A sweep's work units (see sweep_units.h).
#include "eval/sweep_units.h"

#include <cstring>

#include "dist/env.h"
#include "io/files.h"
#include "pipeline/tensor_io.h"
#include "samplers/denoiser.h"
#include "samplers/registry.h"
#include "samplers/sample.h"
#include "samplers/schedule.h"

namespace fewstep {

void SweepUnit::name() { id = "u-" + dist::fnv1a_hex(spec.dump()); }

std::vector<uint8_t> encode_unit(const SweepUnit& unit, const UnitResult& r) {
  const nlohmann::json j = {{"format", "fewstep-sweep-unit"},
                            {"version", 1},
                            {"spec", unit.spec},
                            {"nfe", r.nfe},
                            {"unet_calls", r.unet_calls},
                            {"unet_rows", r.unet_rows},
                            {"wall_ms", r.wall_ms},
                            {"rank", r.rank},
                            {"latents", nlohmann::json::binary(encode_npy(r.latents))},
                            {"width", r.image.width},
                            {"height", r.image.height},
                            {"channels", r.image.channels},
                            {"pixels", nlohmann::json::binary(r.image.pixels)}};
  return nlohmann::json::to_cbor(j);
}

std::optional<UnitResult> decode_unit(const std::vector<uint8_t>& bytes, const SweepUnit& expected,
                                      const std::string& where) {
  const nlohmann::json j = nlohmann::json::from_cbor(bytes, true, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != "fewstep-sweep-unit" ||
      j.value("version", 0) != 1 || !j.contains("spec") || j["spec"] != expected.spec)
    return std::nullopt;
  try {
    UnitResult r;
    r.nfe = j.at("nfe").get<int64_t>();
    r.unet_calls = j.at("unet_calls").get<int64_t>();
    r.unet_rows = j.at("unet_rows").get<int64_t>();
    r.wall_ms = j.at("wall_ms").get<double>();
    r.rank = j.at("rank").get<int>();
    r.latents = decode_npy(j.at("latents").get_binary(), where + ": latents");
    r.image.width = j.at("width").get<int>();
    r.image.height = j.at("height").get<int>();
    r.image.channels = j.at("channels").get<int>();
    r.image.pixels = j.at("pixels").get_binary();
    if (!r.image.consistent()) return std::nullopt;
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  } catch (const FileError&) {
    return std::nullopt;
  }
}

std::filesystem::path unit_path(const std::filesystem::path& out, const SweepUnit& unit) {
  return out / "units" / (unit.id + ".unit");
}

std::optional<UnitResult> load_unit(const std::filesystem::path& out, const SweepUnit& unit) {
  const std::filesystem::path p = unit_path(out, unit);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) return std::nullopt;
  try {
    return decode_unit(read_file_bytes(p), unit, p.string());
  } catch (const FileError&) {
    return std::nullopt;
  }
}

double expected_nfe(const Pipeline& pipe, const GenerateRequest& req) {
  try {
    at::NoGradGuard no_grad;
    const SamplerInfo& info = find_sampler(req.sampler);
    SchedulerConfig cfg = pipe.manifest().scheduler;
    if (req.timestep_spacing) cfg.timestep_spacing = *req.timestep_spacing;
    const ResolvedOptions opts = resolve_sampler_options(info, req.sampler_options);
    const Schedule schedule = make_schedule(cfg, info, req.steps, opts);
    // A linear stand-in model keeps every prediction type finite.
    ModelFn model = [](const at::Tensor& x, const at::Tensor&) { return x * 0.1; };
    std::unique_ptr<Denoiser> denoiser = make_model_denoiser(model, cfg);
    SampleStats st;
    const at::Tensor noise = at::ones({1, 1, 1, 1}, at::kDouble);
    sample(info, schedule, *denoiser, noise, opts, 0, {}, req.picard, &st);
    return st.nfe > 0 ? double(st.nfe) : double(req.steps);
  } catch (const std::exception&) {
    return double(req.steps);
  }
}

}  // namespace fewstep
