// Loading and validation of model.json (see package.h).
#include "unet/package.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace fewstep {
namespace {

using nlohmann::json;

/// Reads typed fields of one JSON object, naming `file` and the dotted field
/// path in every error.
class Fields {
 public:
  Fields(const json& obj, std::string file, std::string prefix)
      : obj_(obj), file_(std::move(file)), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ModelError(file_ + ": field '" + prefix_ + key + "': " + what);
  }
  bool has(const std::string& key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }
  const json& raw(const std::string& key) const {
    if (!obj_.contains(key)) fail(key, "missing (required)");
    return obj_.at(key);
  }
  std::string str(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_string()) fail(key, "expected a string, got " + std::string(v.type_name()));
    return v.get<std::string>();
  }
  int64_t integer(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_number_integer()) fail(key, "expected an integer, got " + std::string(v.type_name()));
    return v.get<int64_t>();
  }
  int64_t positive(const std::string& key) const {
    int64_t v = integer(key);
    if (v < 1) fail(key, "must be at least 1, got " + std::to_string(v));
    return v;
  }
  double number(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_number()) fail(key, "expected a number, got " + std::string(v.type_name()));
    return v.get<double>();
  }
  bool boolean(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_boolean()) fail(key, "expected true or false, got " + std::string(v.type_name()));
    return v.get<bool>();
  }
  std::string one_of(const std::string& key, std::initializer_list<const char*> allowed) const {
    std::string v = str(key);
    std::string list;
    for (const char* a : allowed) {
      if (v == a) return v;
      list += (list.empty() ? "" : ", ") + std::string("\"") + a + "\"";
    }
    fail(key, "\"" + v + "\" is not one of " + list);
  }
  Fields object(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_object()) fail(key, "expected an object, got " + std::string(v.type_name()));
    return Fields(v, file_, prefix_ + key + ".");
  }
  const std::string& file() const { return file_; }

 private:
  const json& obj_;
  std::string file_, prefix_;
};

std::filesystem::path existing_file(const Fields& f, const std::string& key, const std::filesystem::path& dir,
                                    const FileExists& exists) {
  std::filesystem::path p = dir / f.str(key);
  if (!exists(p)) f.fail(key, "file not found: " + p.string());
  return p;
}

SchedulerConfig read_scheduler(const Fields& s) {
  SchedulerConfig c;
  c.num_train_timesteps = s.positive("num_train_timesteps");
  std::string pt = s.one_of("prediction_type", {"epsilon", "v_prediction", "sample", "flow"});
  c.prediction_type = pt == "epsilon"        ? PredictionType::epsilon
                      : pt == "v_prediction" ? PredictionType::v_prediction
                      : pt == "sample"       ? PredictionType::sample
                                             : PredictionType::flow;
  if (s.has("trained_betas")) {
    const json& tb = s.raw("trained_betas");
    if (!tb.is_array()) s.fail("trained_betas", "expected an array of numbers");
    for (const json& b : tb) {
      if (!b.is_number()) s.fail("trained_betas", "expected an array of numbers");
      double beta = b.get<double>();
      if (!(beta > 0.0 && beta <= 1.0)) s.fail("trained_betas", "every beta must be in (0, 1]");
      c.trained_betas.push_back(beta);
    }
    if (static_cast<int64_t>(c.trained_betas.size()) != c.num_train_timesteps)
      s.fail("trained_betas", "has " + std::to_string(c.trained_betas.size()) + " entries, num_train_timesteps is " +
                                  std::to_string(c.num_train_timesteps));
  } else if (c.prediction_type != PredictionType::flow) {
    c.beta_schedule = s.one_of("beta_schedule", {"linear", "scaled_linear", "squaredcos_cap_v2"});
  } else if (s.has("beta_schedule")) {
    c.beta_schedule = s.str("beta_schedule");
  }
  if (s.has("beta_start")) c.beta_start = s.number("beta_start");
  if (s.has("beta_end")) c.beta_end = s.number("beta_end");
  if (!(c.beta_start > 0 && c.beta_start < c.beta_end && c.beta_end < 1))
    s.fail("beta_end", "need 0 < beta_start < beta_end < 1");
  if (s.has("timestep_spacing")) c.timestep_spacing = s.one_of("timestep_spacing", {"leading", "trailing", "linspace"});
  if (s.has("steps_offset")) {
    c.steps_offset = s.integer("steps_offset");
    if (*c.steps_offset < 0) s.fail("steps_offset", "must be >= 0");
  }
  if (s.has("rescale_betas_zero_snr")) c.rescale_betas_zero_snr = s.boolean("rescale_betas_zero_snr");
  if (s.has("clip_sample")) c.clip_sample = s.boolean("clip_sample");
  if (s.has("clip_sample_range")) c.clip_sample_range = s.number("clip_sample_range");
  if (s.has("thresholding")) c.thresholding = s.boolean("thresholding");
  if (s.has("dynamic_thresholding_ratio")) c.dynamic_thresholding_ratio = s.number("dynamic_thresholding_ratio");
  if (s.has("sample_max_value")) c.sample_max_value = s.number("sample_max_value");
  if (s.has("shift")) {
    c.shift = s.number("shift");
    if (!(c.shift > 0)) s.fail("shift", "must be > 0");
  }
  if (s.has("use_karras_sigmas") && s.boolean("use_karras_sigmas")) c.sigma_spacing = "karras";
  if (s.has("use_exponential_sigmas") && s.boolean("use_exponential_sigmas")) c.sigma_spacing = "exponential";
  if (s.has("final_sigmas_type")) c.final_sigmas_type = s.one_of("final_sigmas_type", {"zero", "sigma_min"});
  return c;
}

}  // namespace

SchedulerConfig parse_scheduler_config(const std::string& json_text, const std::string& where) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw ModelError(where + ": not a JSON object");
  return read_scheduler(Fields(j, where, ""));
}

ModelManifest load_manifest(const std::filesystem::path& dir_in) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir_in, ec)) throw ModelError(dir_in.string() + ": model folder not found");
  const std::filesystem::path dir = std::filesystem::absolute(dir_in);
  const std::filesystem::path path = dir / "model.json";
  std::ifstream in(path);
  if (!in) throw ModelError(path.string() + ": cannot open the manifest");
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_manifest(buf.str(), dir, path.string(), [](const std::filesystem::path& p) {
    std::error_code ec;
    return std::filesystem::is_regular_file(p, ec);
  });
}

ModelManifest parse_manifest(std::string_view json_text, const std::filesystem::path& dir, const std::string& file,
                             const FileExists& exists) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ModelError(file + ": not valid JSON");
  if (!j.is_object()) throw ModelError(file + ": expected a JSON object at the top level");

  Fields f(j, file, "");
  ModelManifest m;
  m.dir = dir;
  m.format_version = f.integer("format_version");
  if (m.format_version != 1)
    f.fail("format_version",
           "version " + std::to_string(m.format_version) + " is not supported (this fewstep reads 1)");
  m.name = f.str("name");
  m.kind = f.one_of("kind", {"pixel", "latent"});
  const json& ss = f.raw("sample_size");
  if (!ss.is_array() || ss.size() != 2 || !ss[0].is_number_integer() || !ss[1].is_number_integer() ||
      ss[0].get<int64_t>() < 1 || ss[1].get<int64_t>() < 1)
    f.fail("sample_size", "expected [H, W], two positive integers");
  m.sample_height = ss[0].get<int64_t>();
  m.sample_width = ss[1].get<int64_t>();
  m.in_channels = f.positive("in_channels");
  if (f.has("vae_scale_factor")) m.vae_scale_factor = f.positive("vae_scale_factor");

  m.scheduler = read_scheduler(f.object("scheduler"));

  Fields u = f.object("unet");
  m.unet.file = existing_file(u, "file", dir, exists).string();
  if (u.has("form")) m.unet.form = u.one_of("form", {"monolithic", "blocks"});
  if (u.has("downsample_factor")) m.unet.downsample_factor = u.positive("downsample_factor");

  if (f.has("text_encoder")) {
    Fields t = f.object("text_encoder");
    m.text_encoder = TextEncoderSpec{existing_file(t, "file", dir, exists).string(), t.positive("context_length"),
                                     t.positive("hidden_size")};
    if (!f.has("tokenizer")) f.fail("tokenizer", "required when text_encoder is set");
  }
  if (f.has("tokenizer")) {
    Fields t = f.object("tokenizer");
    m.tokenizer = TokenizerSpec{existing_file(t, "vocab", dir, exists).string(),
                                existing_file(t, "merges", dir, exists).string()};
  }
  if (f.has("vae_decoder")) {
    Fields v = f.object("vae_decoder");
    m.vae_decoder = VaeSpec{existing_file(v, "file", dir, exists).string(), 0.18215};
    if (v.has("scaling_factor")) m.vae_decoder->scaling_factor = v.number("scaling_factor");
    if (!(m.vae_decoder->scaling_factor > 0)) v.fail("scaling_factor", "must be > 0");
  }
  if (m.kind == "latent" && !m.vae_decoder) f.fail("vae_decoder", "required for a latent model");
  if (m.kind == "pixel") {
    if (m.vae_scale_factor != 1) f.fail("vae_scale_factor", "must be 1 for a pixel model");
    if (m.in_channels != 1 && m.in_channels != 3) f.fail("in_channels", "a pixel model needs 1 or 3 channels");
  }
  if (m.sample_height % m.unet.downsample_factor || m.sample_width % m.unet.downsample_factor)
    f.fail("sample_size", "must be a multiple of unet.downsample_factor");

  // Pixel sizes are sample_size × vae_scale_factor; they must be
  // representable (fuzz_manifest: [2^62, 8] × 4 overflowed int64). The size
  // multiple, downsample_factor × vae_scale_factor, is no larger, since
  // sample_size is a positive multiple of downsample_factor.
  int64_t product = 0;
  if (__builtin_mul_overflow(m.sample_height, m.vae_scale_factor, &product) ||
      __builtin_mul_overflow(m.sample_width, m.vae_scale_factor, &product))
    f.fail("sample_size", "times vae_scale_factor does not fit a 64-bit integer");
  m.defaults.width = m.sample_width * m.vae_scale_factor;
  m.defaults.height = m.sample_height * m.vae_scale_factor;
  if (f.has("defaults")) {
    Fields d = f.object("defaults");
    if (d.has("sampler")) m.defaults.sampler = d.str("sampler");
    if (d.has("steps")) m.defaults.steps = d.positive("steps");
    if (d.has("cfg_scale")) {
      m.defaults.cfg_scale = d.number("cfg_scale");
      if (!(m.defaults.cfg_scale >= 0)) d.fail("cfg_scale", "must be >= 0");
    }
    if (d.has("width")) m.defaults.width = d.positive("width");
    if (d.has("height")) m.defaults.height = d.positive("height");
  }
  if (f.has("license")) m.license = f.str("license");
  if (f.has("attribution")) m.attribution = f.str("attribution");
  return m;
}

}  // namespace fewstep
