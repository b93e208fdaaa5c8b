"""Random scheduler configurations for the diffusers peer oracle (diffusers_samplers.py).

Each generator draws one configuration for a fewstep sampler and its diffusers
twin: the diffusers constructor kwargs, fewstep's SchedulerConfig fields, the
fewstep sampler options and diffusers' step() kwargs, from one
`random.Random`. SAMPLERS maps fewstep names to (diffusers class, generator,
stochastic). A registry sampler whose diffusers twin has no generator here
gets `generic_generator` (see diffusers_samplers.py: the peer list comes from
the registry).
"""


# --------------------------------------------------------------------------
# Random configurations
# --------------------------------------------------------------------------
def _steps(rng, high=50):
    """Steps in 1..high, weighted towards the few-step range."""
    u = rng.random()
    if u < 0.5:
        return rng.randint(1, min(10, high))
    if u < 0.85:
        return rng.randint(min(11, high), min(30, high))
    return rng.randint(min(31, high), high)


def _training(rng, predictions, rescale_ok):
    """Random training schedule: (diffusers kwargs, fewstep SchedulerConfig fields)."""
    T = rng.choice([1000, 1000, 1000, 1000, 500, 1200])
    kind = rng.choice(["linear", "scaled_linear", "squaredcos_cap_v2", "trained_betas"])
    beta_start = round(rng.uniform(5e-5, 1.2e-3), 6)
    beta_end = round(rng.uniform(0.008, 0.03), 5)
    prediction = rng.choice(predictions)
    d = {"num_train_timesteps": T, "beta_start": beta_start, "beta_end": beta_end,
         "beta_schedule": "linear" if kind == "trained_betas" else kind,
         "prediction_type": prediction}
    if kind == "trained_betas":
        power = round(rng.uniform(0.7, 2.5), 3)
        d["trained_betas"] = [beta_start + (beta_end - beta_start) * (k / (T - 1)) ** power for k in range(T)]
    # Zero terminal SNR goes with v-prediction (Lin et al. 2024, Sec. 3.2);
    # with epsilon the first x0 would be undefined.
    if rescale_ok and rng.random() < 0.15:
        d["rescale_betas_zero_snr"] = True
        d["prediction_type"] = "v_prediction"
    f = {"num_train_timesteps": T, "beta_schedule": d["beta_schedule"], "beta_start": beta_start,
         "beta_end": beta_end, "trained_betas": d.get("trained_betas", []),
         "prediction_type": d["prediction_type"],
         "rescale_betas_zero_snr": d.get("rescale_betas_zero_snr", False)}
    return d, f


def _spacing(rng, d, f, spacings=("leading", "trailing", "linspace")):
    spacing = rng.choice(spacings)
    offset = rng.choice([0, 0, 1]) if spacing == "leading" else rng.choice([0, 0, 0, 1])
    d["timestep_spacing"] = spacing
    d["steps_offset"] = offset
    f["timestep_spacing"] = spacing
    f["steps_offset"] = offset


def _x0_limits(rng, d, f, allow_threshold=True, p_clip=0.25, p_threshold=0.15):
    """clip_sample / dynamic thresholding (Imagen, Saharia et al. 2022, Sec. 2.3)."""
    u = rng.random()
    if "clip_sample" in _CLIP_OK.get(d["_cls"], set()):
        d["clip_sample"] = False  # diffusers' DDIM/DDPM default True; fewstep's false
    if allow_threshold and u < p_threshold:
        ratio = round(rng.uniform(0.9, 0.995), 3)
        max_value = round(rng.uniform(1.0, 3.0), 2)
        d.update(thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=max_value)
        f.update(thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=max_value)
    elif u < p_threshold + p_clip and "clip_sample" in _CLIP_OK.get(d["_cls"], set()):
        rng_value = rng.choice([1.0, 1.5, 2.0])
        d.update(clip_sample=True, clip_sample_range=rng_value)
        f.update(clip_sample=True, clip_sample_range=rng_value)


_CLIP_OK = {
    "DDIMScheduler": {"clip_sample"}, "DDPMScheduler": {"clip_sample"}, "LCMScheduler": {"clip_sample"},
    "HeunDiscreteScheduler": {"clip_sample"}, "DPMSolverMultistepScheduler": set(),
    "DPMSolverSinglestepScheduler": set(), "UniPCMultistepScheduler": set(), "DEISMultistepScheduler": set(),
}


def _sigma_spacing(rng, d, f, p_karras=0.3, p_exp=0.1, exponential=True):
    u = rng.random()
    if u < p_karras:
        d["use_karras_sigmas"] = True
        f["sigma_spacing"] = "karras"
    elif exponential and u < p_karras + p_exp:
        d["use_exponential_sigmas"] = True
        f["sigma_spacing"] = "exponential"


def _final_sigma(rng, d, f, p=0.3):
    if rng.random() < p:
        d["final_sigmas_type"] = "sigma_min"
        f["final_sigmas_type"] = "sigma_min"


def _bool(b):
    return "true" if b else "false"


def gen_ddim(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], True)
    d["_cls"] = "DDIMScheduler"
    # Weighted towards the spacings where diffusers' t - T//N visits the array
    # (at least 80% of the cases must be compared in full).
    _spacing(rng, d, f, ("leading",) * 10 + ("trailing",) * 9 + ("linspace",))
    _x0_limits(rng, d, f)
    d["set_alpha_to_one"] = rng.random() < 0.8
    if not d["set_alpha_to_one"]:
        f["final_sigmas_type"] = "sigma_min"  # final point at t = 0 (alphas_cumprod[0])
    eta = rng.choice([0.0, 0.0, 1.0, round(rng.uniform(0.05, 1.0), 3)])
    return d, f, {"eta": repr(eta)}, {"eta": eta}


def gen_ddpm(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], True)
    d["_cls"] = "DDPMScheduler"
    _spacing(rng, d, f)
    _x0_limits(rng, d, f)
    variance = rng.choice(["fixed_small", "fixed_small", "fixed_large"])
    d["variance_type"] = variance
    return d, f, ({"variance_type": variance} if variance != "fixed_small" else {}), {}


def gen_euler(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], True)
    d["_cls"] = "EulerDiscreteScheduler"
    _spacing(rng, d, f)
    _sigma_spacing(rng, d, f)
    _final_sigma(rng, d, f, 0.2)
    return d, f, {}, {}


def gen_euler_ancestral(rng):
    d, f = _training(rng, ["epsilon", "v_prediction"], True)  # diffusers: no "sample"
    d["_cls"] = "EulerAncestralDiscreteScheduler"
    _spacing(rng, d, f)
    return d, f, {}, {}


def gen_heun(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], False)  # no rescale option
    d["_cls"] = "HeunDiscreteScheduler"
    _spacing(rng, d, f)
    _sigma_spacing(rng, d, f)
    _x0_limits(rng, d, f, allow_threshold=False)
    return d, f, {}, {}


def _multistep(rng, cls, orders, algorithm):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], True)
    d["_cls"] = cls
    _spacing(rng, d, f)
    _sigma_spacing(rng, d, f)
    # sigma_min after Karras/exponential sigmas repeats the last sigma (a
    # zero-length last step, narrowed): kept rare.
    _final_sigma(rng, d, f, 0.15)
    _x0_limits(rng, d, f)
    order = rng.choice(orders)
    solver_type = rng.choice(["midpoint", "heun"])
    lower_order_final = rng.random() < 0.7
    euler_at_final = rng.random() < 0.2
    d.update(solver_order=order, algorithm_type=algorithm, solver_type=solver_type,
             lower_order_final=lower_order_final, euler_at_final=euler_at_final)
    opts = {"solver_order": str(order), "solver_type": solver_type,
            "lower_order_final": _bool(lower_order_final), "euler_at_final": _bool(euler_at_final)}
    return d, f, opts, {}


def gen_dpmpp_2m(rng):
    return _multistep(rng, "DPMSolverMultistepScheduler", [2, 2, 2, 1, 3], "dpmsolver++")


def gen_dpmpp_3m(rng):
    return _multistep(rng, "DPMSolverMultistepScheduler", [3], "dpmsolver++")


def gen_dpmpp_2m_sde(rng):
    return _multistep(rng, "DPMSolverMultistepScheduler", [2, 2, 2, 1], "sde-dpmsolver++")


def gen_dpm_solver(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], False)  # no rescale option
    d["_cls"] = "DPMSolverSinglestepScheduler"
    # DPMSolverSinglestepScheduler has no timestep_spacing/steps_offset: its
    # timesteps are always the DPM family's `linspace` (N+1 points, last dropped).
    f["timestep_spacing"] = "linspace"
    f["steps_offset"] = 0
    _sigma_spacing(rng, d, f, p_karras=0.15, exponential=False)
    algorithm = rng.choice(["dpmsolver++", "dpmsolver++", "dpmsolver"])
    if algorithm == "dpmsolver" or rng.random() < 0.15:
        # diffusers refuses final_sigmas_type="zero" with noise prediction.
        d["final_sigmas_type"] = "sigma_min"
        f["final_sigmas_type"] = "sigma_min"
    # No thresholding with algorithm_type="dpmsolver": diffusers 0.42's
    # singlestep convert_model_output then indexes alpha_t[timestep] with
    # timestep=None and fails on a shape mismatch (a diffusers bug).
    _x0_limits(rng, d, f, allow_threshold=algorithm != "dpmsolver")
    order = rng.choice([1, 2, 3])
    solver_type = rng.choice(["midpoint", "heun"])
    lower_order_final = rng.random() < 0.6
    d.update(solver_order=order, algorithm_type=algorithm, solver_type=solver_type,
             lower_order_final=lower_order_final)
    opts = {"solver_order": str(order), "algorithm_type": algorithm, "solver_type": solver_type,
            "lower_order_final": _bool(lower_order_final)}
    return d, f, opts, {}


def gen_unipc(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], True)
    d["_cls"] = "UniPCMultistepScheduler"
    _spacing(rng, d, f)
    # sigma_min after Karras sigmas repeats the last sigma (narrowed): both kept rarer.
    _sigma_spacing(rng, d, f, p_karras=0.2, exponential=False)
    _final_sigma(rng, d, f, 0.15)
    _x0_limits(rng, d, f)
    order = rng.choice([1, 2, 2, 3])
    solver_type = rng.choice(["bh1", "bh2"])
    lower_order_final = rng.random() < 0.8
    if not lower_order_final and not d.get("use_karras_sigmas") and rng.random() < 0.8:
        # diffusers' UniP of order > 1 to sigma 0 diverges (unipc_final_step);
        # ending at sigma_min keeps most of these cases fully compared.
        d["final_sigmas_type"] = "sigma_min"
        f["final_sigmas_type"] = "sigma_min"
    d.update(solver_order=order, solver_type=solver_type, lower_order_final=lower_order_final,
             predict_x0=True)
    opts = {"solver_order": str(order), "solver_type": solver_type,
            "lower_order_final": _bool(lower_order_final)}
    # disable_corrector is filled in once the step count is known (make_case).
    return d, f, opts, {}


def gen_lcm(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], True)
    d["_cls"] = "LCMScheduler"
    _x0_limits(rng, d, f)
    original = rng.choice([50, 50, 50, 25, 100])
    scaling = rng.choice([10.0, 10.0, 5.0, 20.0])
    d.update(original_inference_steps=original, timestep_scaling=scaling)
    opts = {"original_inference_steps": str(original), "timestep_scaling": repr(scaling)}
    return d, f, opts, {}


def gen_pndm(rng, skip_prk_steps=False):
    # PNDMScheduler has no rescale_betas_zero_snr and no "sample" prediction.
    d, f = _training(rng, ["epsilon", "v_prediction"], False)
    d["_cls"] = "PNDMScheduler"
    # Its step goes to t - T//N: the schedule's next entry for leading spacing
    # and for trailing when N divides T (make_case picks such N), not for
    # linspace.
    _spacing(rng, d, f, ("leading",) * 6 + ("trailing",) * 5 + ("linspace",))
    d["skip_prk_steps"] = skip_prk_steps
    d["set_alpha_to_one"] = rng.random() < 0.3
    # fewstep's pndm/plms end at ᾱ_0 by default (set_alpha_to_one=False).
    opts = {"final_sigmas_type": "zero"} if d["set_alpha_to_one"] else {}
    return d, f, opts, {}


def gen_plms(rng):
    return gen_pndm(rng, skip_prk_steps=True)


def gen_deis(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], False)  # no rescale option
    d["_cls"] = "DEISMultistepScheduler"
    _spacing(rng, d, f)
    # Karras/exponential sigmas end with a repeated sigma_min (a zero-length
    # last step fewstep drops, shifting the lower-order rules): kept rare.
    _sigma_spacing(rng, d, f, p_karras=0.08, p_exp=0.04)
    _x0_limits(rng, d, f)
    order = rng.choice([1, 2, 2, 3, 3])
    lower_order_final = rng.random() < 0.7
    d.update(solver_order=order, lower_order_final=lower_order_final)
    return d, f, {"solver_order": str(order), "lower_order_final": _bool(lower_order_final)}, {}


def gen_lms(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], False)  # no rescale option
    d["_cls"] = "LMSDiscreteScheduler"
    _spacing(rng, d, f)
    _sigma_spacing(rng, d, f, p_karras=0.2, p_exp=0.1)
    order = rng.choice([4, 4, 4, 3, 2, 1])
    return d, f, ({"order": str(order)} if order != 4 else {}), {"order": order}


def gen_tcd(rng):
    d, f = _training(rng, ["epsilon", "v_prediction", "sample"], True)
    d["_cls"] = "TCDScheduler"
    original = rng.choice([50, 50, 50, 25, 100])
    eta = rng.choice([0.3, 0.3, 0.0, 1.0, round(rng.uniform(0.05, 0.95), 3)])
    d["original_inference_steps"] = original
    return d, f, {"original_inference_steps": str(original), "eta": repr(eta)}, {"eta": eta}


def generic_generator(cls, init_params):
    """A generator for a twin with none of its own: a random training schedule
    (epsilon prediction) and, where the class takes them, a timestep spacing
    and steps_offset; fewstep's default options and diffusers' defaults
    otherwise. `init_params`: the names the class's constructor accepts."""
    def gen(rng):
        d, f = _training(rng, ["epsilon"], False)
        if "timestep_spacing" in init_params:
            _spacing(rng, d, f)
        for key in [k for k in d if k not in init_params]:
            d.pop(key)
        d["_cls"] = cls
        return d, f, {}, {}
    return gen


# fewstep name -> (diffusers class, generator, stochastic)
SAMPLERS = {
    "ddim": ("DDIMScheduler", gen_ddim, None),  # stochastic iff eta > 0
    "ddpm": ("DDPMScheduler", gen_ddpm, True),
    "euler": ("EulerDiscreteScheduler", gen_euler, False),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", gen_euler_ancestral, True),
    "heun": ("HeunDiscreteScheduler", gen_heun, False),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", gen_dpmpp_2m, False),
    "dpmpp_3m": ("DPMSolverMultistepScheduler", gen_dpmpp_3m, False),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", gen_dpmpp_2m_sde, True),
    "dpm_solver": ("DPMSolverSinglestepScheduler", gen_dpm_solver, False),
    "unipc": ("UniPCMultistepScheduler", gen_unipc, False),
    "lcm": ("LCMScheduler", gen_lcm, True),
    "pndm": ("PNDMScheduler", gen_pndm, False),
    "plms": ("PNDMScheduler", gen_plms, False),
    "deis": ("DEISMultistepScheduler", gen_deis, False),
    "lms": ("LMSDiscreteScheduler", gen_lms, False),
    "tcd": ("TCDScheduler", gen_tcd, None),  # stochastic iff eta > 0
}


def make_case(rng, sampler, index, entry=None):
    """One case of `sampler`; `entry` overrides SAMPLERS[sampler] (generic twins)."""
    cls, gen, stochastic = entry or SAMPLERS[sampler]
    d, f, opts, step_kwargs = gen(rng)
    d.pop("_cls")
    T = d.get("num_train_timesteps", 1000)
    if cls in ("LCMScheduler", "TCDScheduler"):
        steps = _steps(rng, min(50, d["original_inference_steps"]))
        if T // d["original_inference_steps"] < 1:
            d["original_inference_steps"] = T
    elif cls == "PNDMScheduler" and not d["skip_prk_steps"]:
        # The Runge–Kutta warm-up takes 4 steps in diffusers (fewer raise): rare.
        steps = rng.randint(1, 3) if rng.random() < 0.04 else max(4, _steps(rng))
    else:
        steps = _steps(rng)
    if (cls in ("DDIMScheduler", "PNDMScheduler") and d.get("timestep_spacing") == "trailing"
            and (cls == "PNDMScheduler" or rng.random() < 0.95)):
        # Trailing DDIM/PNDM agree with fewstep only when N divides T: favour those.
        low = 4 if cls == "PNDMScheduler" and not d["skip_prk_steps"] and steps >= 4 else 1
        steps = rng.choice([n for n in range(low, 51) if T % n == 0])
    if cls == "UniPCMultistepScheduler":
        u = rng.random()
        if u < 0.15:
            disabled, text = list(range(steps)), "all"
        elif u < 0.4 and steps > 1:
            disabled = sorted(rng.sample(range(steps), rng.randint(1, max(1, steps // 3))))
            text = ",".join(str(i) for i in disabled)
        else:
            disabled, text = [], ""
        d["disable_corrector"] = disabled
        if text:
            opts["disable_corrector"] = text
    if stochastic is None:
        stochastic = step_kwargs.get("eta", 0.0) > 0
    case = {"id": f"{sampler}-{index:03d}", "sampler": sampler, "diffusers_class": cls,
            "diffusers_config": d, "diffusers_step_kwargs": step_kwargs, "steps": steps,
            "scheduler_config": f, "options": opts, "stochastic": stochastic,
            "noise_seed": rng.randrange(2**31)}
    if cls == "PNDMScheduler" and d["prediction_type"] == "v_prediction":
        # PNDMScheduler converts the combined v at the current point (its
        # issue #14816); fewstep converts each output at its own point. The
        # oracle runs diffusers' algorithm with that fix: an epsilon scheduler
        # fed ε = α·v + σ·x computed at each call's own timestep.
        d["prediction_type"] = "epsilon"
        case["model_converts_v"] = True
        case["note"] = ("pndm_v_per_output: diffusers converts v after combining outputs (issue #14816); the "
                        "oracle converts each output at its own timestep, as fewstep does")
    return case
