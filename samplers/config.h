// fewstep sampler layer, torch-free part: the scheduler configuration (with
// diffusers' scheduler_config.json keys), sampler options as typed values,
// and the option-string parsers of `--sampler-option` and `--parallel`.
// No ATen: the manifest parser and the fuzz targets build on it alone.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace fewstep {

/// Raised for any bad sampler/schedule configuration (unknown sampler or
/// option, value out of range). The message is one line meant for users.
struct SamplerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// What the network predicts; converted once in the Denoiser wrapper.
enum class PredictionType { epsilon, v_prediction, sample, flow };

/// Training-schedule configuration with diffusers' `scheduler_config.json`
/// keys. Optional members take the sampler family's diffusers default when
/// unset.
struct SchedulerConfig {
  int64_t num_train_timesteps = 1000;
  std::string beta_schedule = "linear";  ///< linear | scaled_linear | squaredcos_cap_v2
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::vector<double> trained_betas;  ///< non-empty overrides beta_schedule
  PredictionType prediction_type = PredictionType::epsilon;
  std::optional<std::string> timestep_spacing;  ///< leading | trailing | linspace
  std::optional<int64_t> steps_offset;
  /// DDIMScheduler's final point (diffusers' final_alpha_cumprod): true ᾱ = 1
  /// (sigma 0), false ᾱ at t = 0 (SD 1.5's config). Unset: diffusers' default
  /// true, unless final_sigmas_type says otherwise. Read by make_schedule for
  /// the ddim sampler only, as diffusers' other schedulers ignore it.
  std::optional<bool> set_alpha_to_one;
  bool rescale_betas_zero_snr = false;
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  bool thresholding = false;  ///< Imagen dynamic thresholding
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  double shift = 1.0;  ///< flow-matching time shift (SD3)
  /// "", "karras", "exponential" or "simple": replaces the spacing's sigmas.
  std::string sigma_spacing;
  std::string final_sigmas_type = "zero";  ///< zero | sigma_min
  std::vector<double> custom_timesteps;    ///< user-given, descending
  std::vector<double> custom_sigmas;       ///< user-given, descending (σ_t/α_t, or t for flow)
  /// The config's other keys (not the fields above, nor metadata keys that
  /// start with '_'), values as text: strings unquoted, booleans true|false,
  /// numbers as JSON writes them, arrays comma-joined. Keys that name a
  /// sampler option (solver_order, original_inference_steps, ...) are that
  /// option's default for a sampler that has it, as diffusers' from_config
  /// hands a scheduler the keys it knows (registry.h, resolve_sampler_options).
  std::map<std::string, std::string> other_keys;
};

/// Options as given by `--sampler-option key=value`, as text.
using SamplerOptions = std::map<std::string, std::string>;

/// How an option's value is checked and typed.
enum class OptionKind {
  choice,      ///< one of `choices` (text)
  boolean,     ///< true|false (also 1|0, yes|no, on|off)
  integer,     ///< an integer in [min, max]
  real,        ///< a finite number in [min, max]
  real_list,   ///< comma-separated finite numbers (may be empty)
  index_list,  ///< "all", "" or comma-separated non-negative integers
};

/// One row of a sampler's option table.
struct SamplerOptionInfo {
  std::string name, default_value, help;
  OptionKind kind = OptionKind::choice;
  std::vector<std::string> choices;  ///< for OptionKind::choice
  double min = -1e300, max = 1e300;  ///< for integer and real
};

/// An index_list value: every index, or the listed ones.
struct IndexList {
  bool all = false;
  std::vector<int64_t> items;
  bool contains(int64_t i) const;
};

/// A sampler's options after resolve_options: every key of its table, each
/// checked once and held as a typed value (what samplers and schedules
/// read), plus its normalised text (what records print). Accessors throw
/// std::logic_error for a key the table lacks or a type it does not have:
/// that is a programming error, never a user's.
class ResolvedOptions {
 public:
  using Value = std::variant<std::string, bool, int64_t, double, std::vector<double>, IndexList>;
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  const std::string& choice(const std::string& key) const { return get<std::string>(key); }
  bool flag(const std::string& key) const { return get<bool>(key); }
  int64_t integer(const std::string& key) const { return get<int64_t>(key); }
  double real(const std::string& key) const { return get<double>(key); }
  const std::vector<double>& reals(const std::string& key) const { return get<std::vector<double>>(key); }
  const IndexList& indices(const std::string& key) const { return get<IndexList>(key); }
  /// Every option as normalised text (booleans true|false, lists without spaces).
  const SamplerOptions& text() const { return text_; }
  /// Sets one option (resolve_options uses it).
  void set(const std::string& key, Value value, std::string text);

 private:
  template <typename T>
  const T& get(const std::string& key) const {
    const auto it = values_.find(key);
    if (it == values_.end()) throw std::logic_error("sampler option '" + key + "' is not in the table");
    const T* v = std::get_if<T>(&it->second);
    if (!v) throw std::logic_error("sampler option '" + key + "' read as the wrong type");
    return *v;
  }
  std::map<std::string, Value> values_;
  SamplerOptions text_;
};

/// Checks one value against its table row and returns it typed and as
/// normalised text. Throws SamplerError
/// "sampler option KEY=VALUE is invalid; valid: <choices or range>".
std::pair<ResolvedOptions::Value, std::string> check_option_value(const SamplerOptionInfo& info,
                                                                  const std::string& value);

/// `given` checked against `table` (the options of sampler `owner`) and
/// completed with the defaults: every key of the table is set. Throws
/// SamplerError naming the key and listing the valid keys (unknown key) or
/// the valid values/range (bad value).
ResolvedOptions resolve_options(const std::vector<SamplerOptionInfo>& table, const SamplerOptions& given,
                                const std::string& owner);

/// Table-row builders, so each sampler's table stays one line per option.
SamplerOptionInfo choice_option(std::string name, std::string def, std::vector<std::string> choices, std::string help);
SamplerOptionInfo bool_option(std::string name, bool def, std::string help);
SamplerOptionInfo int_option(std::string name, int64_t def, int64_t min, int64_t max, std::string help);
SamplerOptionInfo real_option(std::string name, double def, double min, double max, std::string help);
SamplerOptionInfo index_list_option(std::string name, std::string help);

/// The schedule options every sampler takes: final_sigmas_type,
/// sigma_spacing, timesteps, sigmas (see make_schedule).
std::vector<SamplerOptionInfo> schedule_options();

/// `eta` (stochasticity: 0 deterministic, 1 the ancestral/DDPM amount).
SamplerOptionInfo eta_option(double def);

/// Parses repeated `--sampler-option key=value` items (a later key wins).
/// Throws SamplerError "--sampler-option: expected key=value, got '...'".
SamplerOptions parse_option_items(const std::vector<std::string>& items);

/// Picard-parallel sampling settings (ParaDiGMS, Shih et al. 2023, Alg. 1).
struct PicardOptions {
  int64_t window = 8;      ///< P: steps evaluated together in one denoiser call
  double tol = 1e-3;       ///< τ: per-step tolerance, relative to the step's noise std
  int64_t max_rounds = 0;  ///< cap on rounds; 0 = steps (Picard then always converges)
};

/// Parses "picard:window=P,tol=T[,max_rounds=R]" (each key optional; plain
/// "picard" takes the defaults). Throws SamplerError naming --parallel and the bad part.
PicardOptions parse_picard(const std::string& spec);

}  // namespace fewstep
