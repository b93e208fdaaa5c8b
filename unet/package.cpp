// Loading and validation of model.json (see package.h).
#include "unet/package.h"

#include <algorithm>
#include <iterator>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

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
  const json& value() const { return obj_; }
  /// The dotted name of `key` in this object, e.g. "scheduler.set_alpha_to_one".
  std::string path(const std::string& key) const { return prefix_ + key; }

 private:
  const json& obj_;
  std::string file_, prefix_;
};

std::filesystem::path existing_file(const Fields& f, const std::string& key, const std::filesystem::path& dir,
                                    const FileExists& exists) {
  // Relative paths may leave the package ("../emoji/text_encoder.pt").
  std::filesystem::path p = (dir / f.str(key)).lexically_normal();
  if (!exists(p)) f.fail(key, "file not found: " + p.string());
  return p;
}

/// The scheduler keys read into SchedulerConfig's fields above.
constexpr std::string_view kSchedulerFields[] = {"num_train_timesteps",
                                                 "prediction_type",
                                                 "trained_betas",
                                                 "beta_schedule",
                                                 "beta_start",
                                                 "beta_end",
                                                 "timestep_spacing",
                                                 "steps_offset",
                                                 "rescale_betas_zero_snr",
                                                 "clip_sample",
                                                 "clip_sample_range",
                                                 "thresholding",
                                                 "dynamic_thresholding_ratio",
                                                 "sample_max_value",
                                                 "shift",
                                                 "use_karras_sigmas",
                                                 "use_exponential_sigmas",
                                                 "final_sigmas_type",
                                                 "set_alpha_to_one"};

/// diffusers keys whose value here is what fewstep always does, so they need
/// no field: any other value asks for something fewstep does not implement.
struct FixedKey {
  const char* key;
  json value;
  const char* meaning;
};
const std::vector<FixedKey>& fixed_keys() {
  static const std::vector<FixedKey> keys = {
      {"skip_prk_steps", true, "PNDM's Runge-Kutta warm-up steps"},
      {"interpolation_type", "linear", "Euler's sigma interpolation other than linear"},
      {"timestep_type", "discrete", "continuous timesteps"},
      {"use_beta_sigmas", false, "beta-distributed sigmas"},
      {"use_flow_sigmas", false, "flow sigmas on a VP model"},
      {"use_lu_lambdas", false, "uniform log-SNR steps"},
      {"use_dynamic_shifting", false, "resolution-dependent flow shift"},
      {"invert_sigmas", false, "inverted sigmas"},
  };
  return keys;
}

/// A JSON value as an option's text: strings unquoted, arrays comma-joined.
std::string option_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string out;
    for (const json& e : v) {
      if (!out.empty()) out += ',';  // appends: GCC 12 flags "," + s with a false -Wrestrict
      out += option_text(e);
    }
    return out;
  }
  return v.dump();
}

/// Every key of the scheduler object that is not a field: metadata ("_..."),
/// null values and FixedKey defaults are silent, a FixedKey with another
/// value warns, the rest land in other_keys (model_source.h decides which
/// a sampler takes and warns for the others).
void collect_other_keys(const Fields& s, SchedulerConfig& c, std::vector<std::string>* warnings) {
  for (const auto& item : s.value().items()) {
    // Named copies, not structured bindings: clang 14 (the sanitizer and fuzz
    // builds) cannot capture a structured binding in the lambda below.
    const std::string key = item.key();
    const nlohmann::json& value = item.value();
    if (key.empty() || key[0] == '_' || value.is_null()) continue;
    if (std::find(std::begin(kSchedulerFields), std::end(kSchedulerFields), key) != std::end(kSchedulerFields))
      continue;
    const auto fixed =
        std::find_if(fixed_keys().begin(), fixed_keys().end(), [&](const FixedKey& f) { return key == f.key; });
    if (fixed == fixed_keys().end()) {
      c.other_keys[key] = option_text(value);
    } else if (value != fixed->value && warnings) {
      warnings->push_back(s.file() + ": field '" + s.path(key) + "': " + value.dump() + " asks for " + fixed->meaning +
                          ", which fewstep does not implement (it runs " + fixed->value.dump() + "); ignored");
    }
  }
}

SchedulerConfig read_scheduler(const Fields& s, std::vector<std::string>* warnings) {
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
  if (s.has("set_alpha_to_one")) c.set_alpha_to_one = s.boolean("set_alpha_to_one");
  collect_other_keys(s, c, warnings);
  return c;
}

/// `key` (text_encoder or text_encoder_2), when present; `tokenizer_key`
/// must then be present too.
std::optional<TextEncoderSpec> read_text_encoder(const Fields& f, const std::string& key,
                                                 const std::string& tokenizer_key, const std::filesystem::path& dir,
                                                 const FileExists& exists) {
  if (!f.has(key)) return std::nullopt;
  Fields t = f.object(key);
  TextEncoderSpec spec{existing_file(t, "file", dir, exists).string(), t.positive("context_length"),
                       t.positive("hidden_size"), 0, key};
  if (t.has("pooled_size")) spec.pooled_size = t.positive("pooled_size");
  if (!f.has(tokenizer_key)) f.fail(tokenizer_key, "required when " + key + " is set");
  return spec;
}

std::optional<TokenizerSpec> read_tokenizer(const Fields& f, const std::string& key, const std::filesystem::path& dir,
                                            const FileExists& exists) {
  if (!f.has(key)) return std::nullopt;
  Fields t = f.object(key);
  TokenizerSpec spec{
      existing_file(t, "vocab", dir, exists).string(), existing_file(t, "merges", dir, exists).string(), {}};
  if (t.has("pad_id")) {
    spec.pad_id = t.integer("pad_id");
    if (*spec.pad_id < 0) t.fail("pad_id", "must be >= 0");
  }
  return spec;
}

}  // namespace

SchedulerConfig parse_scheduler_config(const std::string& json_text, const std::string& where,
                                       std::vector<std::string>* warnings) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw ModelError(where + ": not a JSON object");
  return read_scheduler(Fields(j, where, ""), warnings);
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

  m.scheduler = read_scheduler(f.object("scheduler"), &m.warnings);

  Fields u = f.object("unet");
  m.unet.file = existing_file(u, "file", dir, exists).string();
  if (u.has("form")) m.unet.form = u.one_of("form", {"monolithic", "blocks"});
  if (u.has("downsample_factor")) m.unet.downsample_factor = u.positive("downsample_factor");
  if (u.has("time_cond_proj_dim")) {
    m.unet.time_cond_proj_dim = u.integer("time_cond_proj_dim");
    if (m.unet.time_cond_proj_dim < 4)
      u.fail("time_cond_proj_dim", "must be at least 4 (the guidance embedding's sin and cos of two frequencies)");
  }
  if (u.has("addition_embed_type")) m.unet.addition_embed_type = u.one_of("addition_embed_type", {"text_time"});
  if (u.has("addition_time_embed_dim")) m.unet.addition_time_embed_dim = u.positive("addition_time_embed_dim");

  m.text_encoder = read_text_encoder(f, "text_encoder", "tokenizer", dir, exists);
  m.tokenizer = read_tokenizer(f, "tokenizer", dir, exists);
  m.text_encoder_2 = read_text_encoder(f, "text_encoder_2", "tokenizer_2", dir, exists);
  m.tokenizer_2 = read_tokenizer(f, "tokenizer_2", dir, exists);
  if (m.text_encoder_2) {
    if (!m.text_encoder)
      f.fail("text_encoder_2", "needs text_encoder (SDXL's context is cat(text_encoder, text_encoder_2))");
    if (m.text_encoder_2->context_length != m.text_encoder->context_length)
      f.fail("text_encoder_2.context_length", "must equal text_encoder.context_length (" +
                                                  std::to_string(m.text_encoder->context_length) +
                                                  "): the two hidden states are concatenated per token");
  }
  if (m.unet.addition_embed_type == "text_time") {
    const std::optional<TextEncoderSpec>& last = m.text_encoder_2 ? m.text_encoder_2 : m.text_encoder;
    if (!last || last->pooled_size < 1)
      u.fail("addition_embed_type", "\"text_time\" needs a pooled text embedding: set " +
                                        std::string(m.text_encoder_2 ? "text_encoder_2" : "text_encoder") +
                                        ".pooled_size");
  }

  if (f.has("guidance")) {
    Fields g = f.object("guidance");
    if (g.has("mode")) m.guidance.mode = g.one_of("mode", {"cfg", "embedded", "none"});
    if (g.has("force_zeros_for_empty_prompt"))
      m.guidance.force_zeros_for_empty_prompt = g.boolean("force_zeros_for_empty_prompt");
    if (m.guidance.mode == "embedded" && m.unet.time_cond_proj_dim < 1)
      g.fail("mode", "\"embedded\" needs unet.time_cond_proj_dim (the width of the guidance embedding)");
    if (m.guidance.mode == "embedded" && !m.text_encoder)
      g.fail("mode", "\"embedded\" guides by a prompt: it needs a text_encoder");
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
  if (m.guidance.mode == "none") m.defaults.cfg_scale = 1.0;
  m.defaults.height = m.sample_height * m.vae_scale_factor;
  if (f.has("defaults")) {
    Fields d = f.object("defaults");
    if (d.has("sampler")) m.defaults.sampler = d.str("sampler");
    if (d.has("steps")) m.defaults.steps = d.positive("steps");
    if (d.has("cfg_scale")) {
      m.defaults.cfg_scale = d.number("cfg_scale");
      if (!(m.defaults.cfg_scale >= 0)) d.fail("cfg_scale", "must be >= 0");
      if (m.guidance.mode == "none" && m.defaults.cfg_scale != 1.0)
        d.fail("cfg_scale", "guidance.mode \"none\" samples without CFG by default: omit it or set 1");
    }
    if (d.has("width")) m.defaults.width = d.positive("width");
    if (d.has("height")) m.defaults.height = d.positive("height");
  }
  if (f.has("license")) m.license = f.str("license");
  if (f.has("attribution")) m.attribution = f.str("attribution");
  return m;
}

}  // namespace fewstep
