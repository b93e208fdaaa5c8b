"""The scheduler config a package's manifest carries: diffusers' scheduler_config.json keys that
fewstep's runtime reads, and nothing else.

The runtime (unet/package.cpp, read_scheduler and collect_other_keys; samplers/registry.cpp,
is_scheduler_option_key) reads three kinds of key:
  - FIELDS: read into SchedulerConfig (the noise schedule, spacing, clipping, ...);
  - OPTION_KEYS: a sampler option of the same name in diffusers' sense (solver_order, ...), the
    default of that option when the sampler has it (diffusers' from_config);
  - FIXED: keys whose value is what fewstep always does; any other value is warned about.
Every other key (PNDM's skip_prk_steps false, DPM-Solver's lambda_min_clipped, flow_shift, ...)
would cost the user one warning line per run for a setting fewstep does not implement, and a
non-finite value (lambda_min_clipped = -inf) is not even valid JSON. The exporter keeps the first
two kinds, drops FIXED keys (they say nothing fewstep does not already do) and names the
dropped keys that asked for something else on stdout, so nothing is lost silently.
tests/pipeline/test_generate_e2e.py checks these lists against the runtime: generating from an
exported package whose source config has every kind of key prints no warning.
"""
import math

FIELDS = ("num_train_timesteps", "prediction_type", "trained_betas", "beta_schedule", "beta_start", "beta_end",
          "timestep_spacing", "steps_offset", "rescale_betas_zero_snr", "clip_sample", "clip_sample_range",
          "thresholding", "dynamic_thresholding_ratio", "sample_max_value", "shift", "use_karras_sigmas",
          "use_exponential_sigmas", "final_sigmas_type", "set_alpha_to_one")
OPTION_KEYS = ("algorithm_type", "euler_at_final", "lower_order_final", "original_inference_steps", "solver_order",
               "solver_type", "timestep_scaling", "variance_type")
FIXED = {"skip_prk_steps": True, "interpolation_type": "linear", "timestep_type": "discrete",
         "use_beta_sigmas": False, "use_flow_sigmas": False, "use_lu_lambdas": False,
         "use_dynamic_shifting": False, "invert_sigmas": False}


def _finite(value) -> bool:
    """False for a float (or a list holding one) that JSON cannot write: NaN, +-inf."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def runtime_config(config: dict):
    """config (a diffusers scheduler config, "_"-metadata included) -> (kept, dropped): kept has the
    keys the runtime reads, with null values left out (diffusers' "use the default"); dropped maps
    each key that asked for something fewstep does not implement to its value."""
    kept, dropped = {}, {}
    for key, value in config.items():
        if key.startswith("_") or value is None:
            continue
        if key in FIXED:
            if value != FIXED[key]:
                dropped[key] = value
        elif (key in FIELDS or key in OPTION_KEYS) and _finite(value):
            kept[key] = value
        else:
            dropped[key] = value
    return kept, dropped
