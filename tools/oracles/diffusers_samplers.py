#!/usr/bin/env python3
"""diffusers as a peer oracle for fewstep's samplers (issues 3 and 15).

Generates random scheduler configurations for every fewstep sampler that has
a diffusers twin, runs diffusers' scheduler on them with a deterministic toy
model (diffusers_harness.toy_model) in float64, and writes one JSON file that
tests/samplers_peer reads to run fewstep on the same cases through sample().
The peer list comes from the registry (`fewstep samplers --json`, see
peer_list): every sampler whose aliases name a diffusers scheduler class
(its twin) or that the registry marks as another configuration of one
(registry.h, diffusers_peer: plms, dpmpp_3m, dpmpp_2m_sde); the random
configurations come from peer_configs.py.

The noise is the runtime's: the seed's generator draws the unit noise
(float32) and then each step's noise (float64), as fewstep's sample() does;
diffusers starts where sample() does (the unit noise times sqrt(α0² + σ0²) in
x = α·x0 + σ·ε units) and its noise draws get the step noise.

Usage:
  diffusers_samplers.py --out cases.json [--fewstep BIN] [--seed S] [--cases-per-sampler K]
                        [--samplers ddim,euler,...] [--check-promotion]

Exit status: 0 on success, 77 when torch, diffusers or scipy (the backend of
diffusers' LMSDiscreteScheduler) cannot be imported (the ctest fixture maps
77 to "skipped"; under FEWSTEP_REQUIRE_ORACLES=1, as in CI, that is 1
instead: see oracle_env.py), 1 on any other error (the harness's, or the
fewstep binary's).

Each sampler's cases are drawn from `random.Random(f"{seed}/{sampler}")`
(default seed below), so they do not depend on the other samplers, and are
printed, one line per case, so a failing case can be regenerated and read.

Coordinates. fewstep's samplers run on x_t = alpha_t*x0 + sigma_t*eps
(variance preserving). DDIM, DDPM, DPM-Solver, UniPC and LCM use the same x
in diffusers (so do PNDM, DEIS and TCD). The Euler family (Euler, Euler
ancestral, Heun, LMS) runs on x_t/alpha_t = x0 + s_t*eps with s = sigma/alpha,
starting from noise*sqrt(1 + s_0^2); the JSON stores x_init and x_final converted to the
variance-preserving x (multiplied by alpha = 1/sqrt(1+s^2) at that point),
and the factors in `x_scale`.

Per case the JSON holds the configuration (diffusers' kwargs and fewstep's
SchedulerConfig fields and sampler options), the initial sample, diffusers'
timesteps and k-sigmas, every model call's timestep, x after every step
(`trajectory`), the final sample, the per-step noise of stochastic samplers,
and `compare`: "all", or a narrower scope with the reason in
`known_different` where fewstep deliberately differs or diffusers fails
(see comparison_scope). `note` says where the oracle corrected one step of
diffusers (see run_case).
"""
import argparse
import importlib
import inspect
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
import warnings

from oracle_env import import_or_skip

np = import_or_skip("numpy")
torch = import_or_skip("torch")
diffusers = import_or_skip("diffusers")
import_or_skip("scipy")  # diffusers' LMSDiscreteScheduler needs it (else a dummy class stands in)

import diffusers_harness as harness  # noqa: E402  (the project's own: an error here fails)

DEFAULT_SEED = 20261130
SHAPE = [1, 2, 4, 4]



def module_of(cls):
    """The diffusers module that defines scheduler class `cls`."""
    return importlib.import_module(getattr(diffusers, cls).__module__)


EULER_FAMILY = {"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                "LMSDiscreteScheduler"}


from peer_configs import SAMPLERS, generic_generator, make_case  # noqa: E402


# --------------------------------------------------------------------------
# Running diffusers
# --------------------------------------------------------------------------
def _modules(classes):
    """The modules of the diffusers classes `classes` (promoted to float64 and
    given the planned noise while a case runs)."""
    return list({id(m): m for m in (module_of(c) for c in classes)}.values())


def _ksigma(alphas_cumprod, t):
    a = float(alphas_cumprod[int(t)])
    return math.sqrt((1.0 - a) / a) if a > 0 else math.inf


def ddim_prev_timesteps_agree(timesteps, T, steps):
    """True when diffusers' DDIM `prev = t - T//N` visits the schedule array.

    fewstep takes the next timestep from the array (issue 3, rule 1); the two
    agree when every t_i - T//N equals t_{i+1} and the last one is negative
    (diffusers then uses final_alpha_cumprod, fewstep the final point).
    """
    ratio = T // steps
    for i, t in enumerate(timesteps):
        prev = t - ratio
        if i + 1 < len(timesteps):
            if prev != timesteps[i + 1]:
                return False
        elif prev >= 0:
            return False
    return True


def _schedule_points(sched, cls):
    """(timesteps [N], k-sigmas [N+1]) of the inference schedule, k-sigma = sigma/alpha.

    The final k-sigma is None for LCM, whose last step returns its denoised
    output instead of stepping to a final point.
    """
    if cls in EULER_FAMILY:
        sig = sched.sigmas.double()
        ts = sched.timesteps
        if cls == "HeunDiscreteScheduler":  # [s0, s1, s1, ..., s_{N-1}, s_{N-1}, s_N]
            sig = torch.cat([sig[:1], sig[1:-1:2], sig[-1:]])
            ts = torch.cat([ts[:1], ts[1::2]])
        return [float(t) for t in ts], [float(s) for s in sig]
    if cls in ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler",
               "DEISMultistepScheduler"):
        return [float(t) for t in sched.timesteps], [float(s) for s in sched.sigmas.double()]
    if cls == "PNDMScheduler":
        # Its points: the spacing's timesteps (the call list repeats some),
        # then t - T//N < 0, read as final_alpha_cumprod.
        ac = sched.alphas_cumprod.double()
        ts = [float(t) for t in sched._timesteps[::-1]]
        final_ac = float(sched.final_alpha_cumprod)
        return ts, [_ksigma(ac, t) for t in ts] + [math.sqrt((1 - final_ac) / final_ac) if final_ac < 1 else 0.0]
    # DDIM, DDPM, LCM: k-sigmas from alphas_cumprod at the timesteps.
    ac = sched.alphas_cumprod.double()
    ts = [float(t) for t in sched.timesteps]
    sigmas = [_ksigma(ac, t) for t in ts]
    if cls == "DDIMScheduler":
        final_ac = float(sched.final_alpha_cumprod)
        sigmas.append(math.sqrt((1 - final_ac) / final_ac) if final_ac < 1 else 0.0)
    elif cls == "TCDScheduler":
        sigmas.append(_ksigma(ac, 0))  # the last step ends at timestep floor((1-eta)·0) = 0
    elif cls == "DDPMScheduler":
        sigmas.append(0.0)  # prev_t = -1 uses alpha_prod = 1
    else:
        sigmas.append(None)
    return ts, sigmas


DPM_FAMILY = {"DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler",
              "DEISMultistepScheduler"}


def _repeated_integer_timesteps(sched, cls, config, timesteps):
    """{point: exact timestep} where diffusers' integer timesteps repeat.

    With Karras or exponential sigmas the DPM family hands the model
    int(round(t)) or int(t) of _sigma_to_t's t. fewstep keeps the exact t at
    a point whose integer equals a neighbour's (samplers/schedule.h), so that
    its model timesteps strictly decrease. Empty for every other case.
    """
    if cls not in DPM_FAMILY or not (config.get("use_karras_sigmas") or config.get("use_exponential_sigmas")):
        return {}
    n = len(timesteps)
    repeated = [i for i in range(n)
                if (i > 0 and timesteps[i] == timesteps[i - 1]) or (i + 1 < n and timesteps[i] == timesteps[i + 1])]
    if not repeated:
        return {}
    ac = sched.alphas_cumprod.double().numpy()
    log_sigmas = np.log(((1 - ac) / ac) ** 0.5)
    return {i: float(sched._sigma_to_t(np.float64(sched.sigmas[i]), log_sigmas)) for i in repeated}


#: Relative perturbation of diffusers' sigmas (about 4.5 float64 ulp) used to
#: measure how far rounding alone moves a case's samples (rounding_floor).
SIGMA_PERTURBATION = 1e-15


def rounding_floor(case, modules, result):
    """Per trajectory entry, max |x - x'| when diffusers' own sigmas move by
    SIGMA_PERTURBATION relative: the case's float64 conditioning. fewstep and
    diffusers evaluate the same formulas in a different order, so their
    difference is of this size, while an algorithmic difference is orders of
    magnitude larger. Zeros for schedulers without a `sigmas` table."""
    perturbed, _ = run_case(case, modules, perturb=SIGMA_PERTURBATION)
    floor = [max(abs(x - y) for x, y in zip(a, b))
             for a, b in zip(result["trajectory"], perturbed["trajectory"])]
    # Steps diffusers' perturbed run did not complete: the largest floor seen.
    return floor + [max(floor, default=0.0)] * (len(result["trajectory"]) - len(floor))


def _fewstep_step(cls, case, j, evals):
    """(step index in fewstep's numbering, whether call j completes that step).

    Heun: two calls per step but the last. PNDM with the Runge–Kutta start:
    four calls on each of the first three steps. PNDM with skip_prk_steps:
    the first step takes two calls (the second timestep is evaluated twice)."""
    if cls == "HeunDiscreteScheduler":
        return (j + 1) // 2, j % 2 == 1 or j == evals - 1
    if cls == "PNDMScheduler":
        if not case["diffusers_config"].get("skip_prk_steps", False):
            return (j // 4, j % 4 == 3) if j < 12 else (j - 9, True)
        if j == 0:
            return 0, evals == 1
        return j - 1, True
    return j, True


def run_case(case, modules, promote=True, perturb=0.0):
    """Runs diffusers on one case; returns (expected-results fields, final x or None).

    The trajectory holds x after each step (at points 1..N) in fewstep's
    variance-preserving coordinates. An exception or a non-finite value in
    diffusers is recorded in `diffusers_error` and stops the run; the
    trajectory then holds the steps completed before it.
    """
    cls = case["diffusers_class"]
    mod = module_of(cls)
    steps = case["steps"]
    # fewstep's sample(): the unit noise is a float32 draw of one CPU
    # generator seeded with the seed, the step noise its next float64 draws.
    unit, step_noise = harness.runtime_noise(SHAPE, case["noise_seed"], steps)
    plan = harness.NoisePlan(step_noise if case["stochastic"] else [])
    model_timesteps, trajectory, corrected = [], [], []
    error = None
    note = None
    with harness.promoted_to_float64(modules, promote), harness.injected_noise(modules, plan):
        try:
            sched = getattr(mod, cls)(**case["diffusers_config"])
            sched.set_timesteps(steps)
        except Exception as exc:  # e.g. PNDMScheduler below 4 steps
            return {"timesteps": [], "sigmas": [], "model_timesteps": [], "x_init": [], "x_scale": [],
                    "trajectory": [], "noise_draw_steps": [],
                    "diffusers_error": f"set_timesteps: {type(exc).__name__}: {exc}"}, None
        if perturb and hasattr(sched, "sigmas"):
            sched.sigmas = sched.sigmas * (1.0 + perturb)
        if hasattr(sched, "set_begin_index"):
            # Start at index 0 as a sampler does. Without it diffusers finds
            # the first step by value and starts at the second copy when
            # rounding duplicated t0 (Karras), skipping a step.
            sched.set_begin_index(0)
        timesteps, sigmas = _schedule_points(sched, cls)
        model_t = list(sched.timesteps)
        repeated = _repeated_integer_timesteps(sched, cls, case["diffusers_config"], timesteps)
        if repeated:
            # fewstep keeps these points' exact timesteps (no duplicate timesteps,
            # issue 3); diffusers' DPM-family update reads only sigmas once
            # set_begin_index fixed the step index, so feeding the model the
            # exact value here is diffusers' algorithm with fewstep's timesteps.
            for i, t_exact in repeated.items():
                timesteps[i] = t_exact
                model_t[i] = t_exact
            note = (f"repeated_timesteps: diffusers' integer timesteps repeat at points {sorted(repeated)}; "
                    "fewstep gives the model the exact timesteps there, and so does the oracle")
        if (cls == "DDPMScheduler" and case["diffusers_config"].get("variance_type") == "fixed_large"
                and timesteps[-1] > 0):
            # diffusers adds noise of variance beta_t = 1 - alphas_cumprod[t] on the
            # last step whenever its t > 0; Ho et al. 2020 Alg. 2 (z = 0 on the last
            # step) and fewstep add none there. Zero noise gives the Alg. 2 result.
            plan.zero_steps.add(steps - 1)
            note = ("ddpm fixed_large: diffusers adds beta_t noise on a last step with t > 0; the oracle "
                    "feeds it zero noise there (Ho et al. 2020 Alg. 2: z = 0 on the last step)")
        scale = [1.0 / math.sqrt(1.0 + s * s) if cls in EULER_FAMILY else 1.0 for s in sigmas]
        # The initial sample as fewstep's sample() scales it: x = unit noise in
        # x = α·x0 + σ·ε units (VP: α² + σ² = 1), i.e. unit·sqrt(1 + σ0²) in the
        # Euler family's x/α. diffusers' own init_noise_sigma is σ0 there for
        # linspace/trailing spacing (so its start has variance σ0², not σ0² + 1).
        start = 1.0 / scale[0]
        if abs(float(sched.init_noise_sigma) - start) > 1e-12 * start:
            note = (f"init_noise_sigma: diffusers starts at {float(sched.init_noise_sigma):.9g}·noise, fewstep's "
                    f"sample() at {start:.9g}·noise (the marginal's scale); the oracle starts diffusers there too")
        x = unit * start
        x_start = x.clone()
        evals = len(sched.timesteps)
        convert_v = case.get("model_converts_v", False)
        for j, t in enumerate(sched.timesteps):
            # Step index in fewstep's numbering, and whether the call ends a step.
            i, done = _fewstep_step(cls, case, j, evals)
            plan.step = None if cls == "HeunDiscreteScheduler" and j % 2 == 1 else i
            try:
                model_in = sched.scale_model_input(x, t)
                out = harness.toy_model(model_in, model_t[j])
                if convert_v:
                    # ε from v at the call's own point (see make_case).
                    a = float(sched.alphas_cumprod[int(t)])
                    out = math.sqrt(a) * out + math.sqrt(1.0 - a) * model_in
                model_timesteps.append(float(model_t[j]))
                x = sched.step(out, t, x, **case["diffusers_step_kwargs"]).prev_sample
            except Exception as exc:  # diffusers fails on some configurations
                error = f"step {i}: {type(exc).__name__}: {exc}"
                break
            if cls == "UniPCMultistepScheduler" and j > 0:
                corrected.append((sched.last_sample * 1.0).flatten().tolist())
            if done:
                point = len(trajectory) + 1
                if not torch.isfinite(x).all():
                    error = f"step {point - 1}: non-finite sample"
                    break
                trajectory.append((x * scale[point]).flatten().tolist())
    if (cls == "UniPCMultistepScheduler" and error == f"step {steps - 1}: non-finite sample"
            and sched.config.solver_type == "bh1" and sched.this_order == 1 and sigmas[-1] == 0.0):
        # UniP-1 to sigma 0 (lambda = +inf) is x_t = m0, the data prediction,
        # for any B(h) (the B(h) term multiplies a zero residual); diffusers'
        # bh1 takes B(h) = h = inf and returns inf*0 = NaN. The limit is used.
        x = sched.model_outputs[-1]
        trajectory.append(x.flatten().tolist())
        error = None
        note = (note + "; " if note else "") + ("unipc bh1 last step: diffusers returns NaN (B(h) = h = inf times a zero residual); the "
                "expected final sample is the UniP-1 limit x = m0 (diffusers' converted model output)")
    ac0 = float(sched.alphas_cumprod[0])
    result = {
        "train_sigma_min": math.sqrt((1 - ac0) / ac0),
        "timesteps": timesteps,
        # JSON has no infinity: a zero-terminal-SNR point's k-sigma is "inf".
        "sigmas": [s if s is None or math.isfinite(s) else "inf" for s in sigmas],
        "model_timesteps": model_timesteps,
        "x_init": (x_start * scale[0]).flatten().tolist(),
        "x_scale": scale,
        "trajectory": trajectory,
        "noise_draw_steps": plan.draws,
    }
    if note:
        result["note"] = note
    if corrected:
        # UniPC: diffusers' step i returns the predictor at point i+1; the
        # corrector (UniC) updates it at the start of step i+1. These are the
        # corrected samples at points 1..N-1.
        result["trajectory_corrected"] = corrected
    if error is None:
        result["x_final"] = trajectory[-1]
    else:
        result["diffusers_error"] = error
    if case["stochastic"]:
        result["step_noise"] = [n.flatten().tolist() for n in plan.noise]
    return result, (x if error is None else None)


ONE_STEP = {"DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
            "HeunDiscreteScheduler", "LCMScheduler"}


def _zero_length_last_step(sigmas):
    """True when the last step has (up to rounding) zero length.

    Karras/exponential sigmas already end at sigma_min, so appending the final
    sigma_min (final_sigmas_type="sigma_min"; UniPC appends the last Karras
    sigma itself) repeats it; DDIM with set_alpha_to_one=False does the same
    when its last timestep is 0.
    """
    return (len(sigmas) > 2 and isinstance(sigmas[-1], float) and isinstance(sigmas[-2], float)
            and sigmas[-1] > 0 and sigmas[-1] >= sigmas[-2] * (1 - 1e-12))


def _drop_zero_length_step(case, result):
    """The expected results as fewstep defines them when it drops the repeated
    final sigma: make_schedule keeps sigmas strictly decreasing by dropping the
    inner point before the final one (samplers/schedule.h), so fewstep runs
    N-1 steps. For one-step samplers the dropped step is the identity, so the
    rest of the run is unchanged. Returns (fields, scope, reason).
    """
    n = case["steps"]
    alt = {
        "timesteps": result["timesteps"][:-1],
        "sigmas": result["sigmas"][:-2] + result["sigmas"][-1:],
        "x_scale": result["x_scale"][:-2] + result["x_scale"][-1:],
        # PNDM's last step is one call; the one-step samplers' calls are the steps.
        "model_timesteps": (result["model_timesteps"][:-1] if case["diffusers_class"] == "PNDMScheduler"
                            else result["model_timesteps"][:n - 1]),
    }
    completed = len(result["trajectory"]) == n
    alt["trajectory"] = (result["trajectory"][:n - 2] + result["trajectory"][-1:] if completed
                         else result["trajectory"][:n - 2])
    # PNDM's transfer between equal ᾱ is the identity exactly (its zero-length
    # last step: t = 0 to final_alpha_cumprod = ᾱ_0), so dropping it changes nothing.
    if (case["diffusers_class"] in ONE_STEP or case["diffusers_class"] == "PNDMScheduler") and completed:
        alt["x_final"] = alt["trajectory"][-1]
        return alt, "all", None
    # Multistep solvers: with one step fewer, fewstep's lower-order rules
    # (lower_order_final, the "< 15 steps" test, singlestep order lists)
    # apply to other steps than diffusers'; the last three steps can differ.
    alt["compare_steps"] = max(0, n - 4)
    return alt, "trajectory", (
        "duplicate_final_sigma: diffusers repeats the last sigma and takes a zero-length last step; "
        "fewstep dropped the repeated point (schedule.h), so its multistep order rules shift and only "
        "the schedule and the steps before the last three are compared")


def comparison_scope(case, result):
    """What the C++ test may compare: ("all" | "trajectory" | "schedule" | "runs" | "refused", reason).

    "all": schedule, model timesteps, trajectory and final sample.
    "trajectory": the schedule and the first `compare_steps` trajectory
    entries; fewstep's final sample must only be finite. "schedule": timesteps
    and sigmas only. "runs": fewstep's run must only be finite. "refused":
    fewstep must refuse the configuration (SamplerError). May rewrite `result`; adds result["alternative"] (the
    same fields and its own scope) when fewstep may legitimately run a
    different number of steps (the C++ test picks the one matching fewstep's
    schedule).
    """
    cls = case["diffusers_class"]
    n = case["steps"]
    cfg = case["diffusers_config"]
    train_sigma_min = result.pop("train_sigma_min", None)
    if cls == "PNDMScheduler" and not cfg.get("skip_prk_steps") and n < 4:
        return "runs", ("pndm_short_warm_up: diffusers' PNDMScheduler needs 4 steps for its Runge-Kutta warm-up "
                        f"and raises ({result.get('diffusers_error')}); fewstep runs {n} step(s), Runge-Kutta on "
                        "those that end above sigma 0: its run must only be finite")
    T = cfg["num_train_timesteps"]
    if (cls in EULER_FAMILY and cfg.get("timestep_spacing") == "trailing" and len(np.arange(T, 0, -T / n)) > n
            and (cfg.get("use_karras_sigmas") or cfg.get("use_exponential_sigmas"))):
        return "runs", ("trailing_arange_sigma_range: diffusers' trailing arange yields N+1 timesteps here, the "
                        "last -1 (read as timestep 0), so its Karras/exponential range ends at the training "
                        "sigma_min; fewstep's trailing yields exactly N (schedule.h), its range ends at the Nth "
                        "timestep: the sigmas differ, fewstep's run must only be finite")
    if n == 1 and ((cls == "UniPCMultistepScheduler" and cfg.get("use_karras_sigmas")
                    and cfg.get("final_sigmas_type") == "sigma_min")
                   or (cls == "DEISMultistepScheduler"
                       and (cfg.get("use_karras_sigmas") or cfg.get("use_exponential_sigmas")))):
        # diffusers' UniPC and DEIS take the last Karras (DEIS: or exponential)
        # sigma as the final one: at 1 step that is sigma_max itself, a
        # zero-length step.
        result["sigmas"][-1] = train_sigma_min
        return "schedule", ("karras_one_step: diffusers' UniPC/DEIS end a Karras or exponential schedule at its "
                            "last sigma, at 1 step sigma_max itself (a zero-length step); fewstep ends at the "
                            "training sigma_min (the same point at every other step count): the schedule's point 0 "
                            "is compared")
    ks = [math.inf if k == "inf" else k for k in result["sigmas"]]
    if n == 1 and None not in ks and 0 < ks[0] <= ks[-1] * (1 + 1e-9):
        return "refused", ("single_zero_length_step: the only step goes from sigma_min to sigma_min (diffusers "
                           "takes a zero-length step); fewstep refuses such a schedule with a one-line error")
    if None not in ks and any(ks[i] >= ks[i - 1] for i in range(1, n)):
        # Zero-SNR rescale with diffusers' clamp ᾱ_T = 2^-24 can leave the
        # next timesteps' ᾱ below it: the sigmas then rise after point 0.
        keep = [0]
        for i in range(1, n):
            if ks[i] < ks[keep[-1]] * (1 - 1e-9):
                keep.append(i)
        while len(keep) > 1 and not ks[-1] < ks[keep[-1]] * (1 - 1e-9):
            keep.pop()
        reason = ("non_monotone_sigmas: diffusers' sigmas rise after a point (zero-SNR clamp of the last "
                  "alphas_cumprod to 2^-24 above its neighbours'); fewstep drops each point not below its "
                  "predecessor (schedule.h), so only the schedule is compared, without those points")
        result["alternative"] = {"timesteps": [result["timesteps"][i] for i in keep],
                                 "sigmas": [result["sigmas"][i] for i in keep] + result["sigmas"][-1:],
                                 "compare": "schedule", "known_different": reason}
        return "schedule", reason
    if len(result["timesteps"]) > n:
        # numpy's float arange(T, 0, -T/N) yields N+1 values for some T, N;
        # the extra one rounds to timestep -1, which diffusers then indexes
        # from the end of alphas_cumprod.
        result["timesteps"] = result["timesteps"][:n]
        result["sigmas"] = result["sigmas"][:n] + result["sigmas"][-1:]
        return "schedule", ("trailing_arange_extra_step: diffusers' trailing spacing yields N+1 timesteps for "
                            "this T and N (numpy float arange; the last is -1); fewstep yields exactly N "
                            "(schedule.h), so only the first N timesteps are compared")
    if cls in ("DDIMScheduler", "PNDMScheduler"):
        ts = [int(t) for t in result["timesteps"]]
        if not ddim_prev_timesteps_agree(ts, cfg["num_train_timesteps"], n):
            if _zero_length_last_step(result["sigmas"]):
                # fewstep may also drop the repeated final point: its schedule then
                # matches the alternative's (compared as a schedule only, too).
                alt, _, _ = _drop_zero_length_step(case, result)
                alt["compare"] = "schedule"
                result["alternative"] = alt
            if cls == "PNDMScheduler":
                return "schedule", ("pndm_prev_timestep: diffusers' PNDMScheduler steps to t - T//N (and its first "
                                    "step back from t + T//N), fewstep to the next schedule entry; the two differ "
                                    "for this spacing and step count")
            return "schedule", ("ddim_prev_timestep: diffusers' DDIMScheduler.step steps to t - T//N, fewstep "
                                "to the next schedule entry (issue 3: 'the next timestep always comes from the "
                                "schedule array'); the two differ for this spacing and step count")
    error = result.get("diffusers_error")
    last = f"step {n - 1}:"
    if _zero_length_last_step(result["sigmas"]):
        # fewstep drops the repeated point only when it is exactly repeated
        # after its own rounding; both outcomes are valid, so both are written.
        alt, alt_scope, alt_reason = _drop_zero_length_step(case, result)
        alt["compare"] = alt_scope
        if alt_reason:
            alt["known_different"] = alt_reason
        result["alternative"] = alt
        if (cls not in ONE_STEP and cls != "PNDMScheduler") or error is not None:
            # A multistep update over h ~ 1e-16 is ill-conditioned: divided
            # differences over h, (e^-h - 1 + h)/h^2, the SDE's sqrt(1 - e^-2h)
            # turn rounding into O(1e-8..1) changes (or NaN in diffusers).
            result["compare_steps"] = n - 1
            result.pop("x_final", None)
            return "trajectory", (
                "zero_length_final_step: the last step has h = 0 up to rounding, where diffusers' "
                f"update is ill-conditioned{f' and fails ({error})' if error else ''}; the steps before it "
                "are compared and fewstep's final sample must be finite")
    if error is None:
        return "all", None
    if cls == "UniPCMultistepScheduler" and error.startswith(last) and result["sigmas"][-1] == 0.0:
        result["compare_steps"] = n - 1
        return "trajectory", (
            "unipc_final_step: the last step goes to sigma 0 (lambda = +inf) with order > 1 "
            "(lower_order_final off), where UniP's divided differences over r_k = 0 diverge; diffusers "
            f"returns NaN/Inf or raises ({error}); only the steps before it are compared and fewstep's "
            "final sample must be finite")
    return "schedule", f"diffusers failed: {error}"


def registry_of(fewstep):
    """The sampler registry, from `fewstep samplers --json` (a list of
    {name, aliases, diffusers_twin, diffusers_peer, ...}). A failure is an error, not a skip:
    the binary is the project's own."""
    out = subprocess.run([fewstep, "samplers", "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def peer_list(registry):
    """{fewstep name: (diffusers class, generator, stochastic)} of the samplers to run.

    With the registry: every sampler with a diffusers peer class (registry.h,
    diffusers_peer: its twin, the first alias that is a scheduler class, or
    the class it is another configuration of, as plms of PNDMScheduler with
    skip_prk_steps), with its generator from peer_configs.SAMPLERS or, for a
    twin that has none, peer_configs.generic_generator. A SAMPLERS entry
    whose sampler is not a registry peer or runs another class, or a variant
    without a SAMPLERS entry (no generic configuration can choose its
    variant), is an error. Without the registry: SAMPLERS as it is."""
    if registry is None:
        return dict(SAMPLERS)
    entries = {}
    for r in registry:
        cls = r.get("diffusers_peer")
        if cls is None:
            continue
        if r["name"] in SAMPLERS:
            if SAMPLERS[r["name"]][0] != cls:
                raise RuntimeError(f"peer_configs.SAMPLERS runs {r['name']} against {SAMPLERS[r['name']][0]}, "
                                   f"but the registry names {cls} as its diffusers peer")
            entries[r["name"]] = SAMPLERS[r["name"]]
        elif cls == r["diffusers_twin"]:
            params = set(inspect.signature(getattr(diffusers, cls).__init__).parameters)
            entries[r["name"]] = (cls, generic_generator(cls, params), r["stochastic"])
        else:
            raise RuntimeError(f"{r['name']} is a configuration of {cls} (registry): give it a generator in "
                               "peer_configs.SAMPLERS")
    stray = [name for name in SAMPLERS if name not in entries]
    if stray:
        raise RuntimeError(f"peer_configs.SAMPLERS names {stray}, which are no registry sampler's diffusers peers")
    return entries


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the case list")
    ap.add_argument("--cases-per-sampler", type=int, default=24)
    ap.add_argument("--samplers", default="", help="comma list of fewstep names (default: the peer list)")
    ap.add_argument("--fewstep", help="the fewstep binary: the peer list comes from `fewstep samplers --json`")
    ap.add_argument("--check-promotion", action="store_true",
                    help="also run in diffusers' own float32 and report the largest difference")
    ap.add_argument("--quiet", action="store_true", help="do not print the case list")
    args = ap.parse_args(argv)
    # Never leave a stale file behind for the C++ test to read.
    if os.path.exists(args.out):
        os.remove(args.out)
    warnings.filterwarnings("ignore", category=FutureWarning)  # algorithm_type="dpmsolver"
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    from diffusers.utils import logging as dlogging
    dlogging.set_verbosity_error()
    torch.set_num_threads(1)

    entries = peer_list(registry_of(args.fewstep) if args.fewstep else None)
    names = [s for s in args.samplers.split(",") if s] or list(entries)
    unknown = [s for s in names if s not in entries]
    if unknown:
        print(f"diffusers_samplers: unknown sampler(s) {unknown}; valid: {list(entries)}", file=sys.stderr)
        return 1
    modules = _modules({entries[n][0] for n in names})
    start = time.time()
    cases = []
    print(f"diffusers_samplers: seed {args.seed}, {args.cases_per_sampler} cases per sampler, "
          f"diffusers {diffusers.__version__}, torch {torch.__version__}")
    for sampler in names:
        # One stream per sampler: its cases do not depend on which other
        # samplers run, nor in which order.
        rng = random.Random(f"{args.seed}/{sampler}")
        for i in range(args.cases_per_sampler):
            case = make_case(rng, sampler, i, entries[sampler])
            result, x_final = run_case(case, modules)
            if "note" in case and "note" in result:
                result["note"] = case["note"] + "; " + result["note"]
            result["rounding_floor"] = rounding_floor(case, modules, result)
            scope, reason = comparison_scope(case, result)
            case.update(result)
            case["compare"] = scope
            if reason:
                case["known_different"] = reason
            if args.check_promotion and x_final is not None:
                _, x32 = run_case(case, modules, promote=False)
                if x32 is None:
                    x32 = torch.full_like(x_final, math.nan)
                scale = max(1.0, float(x_final.abs().max()))
                case["float32_difference"] = float((x32 - x_final).abs().max()) / scale
            cases.append(case)
            if not args.quiet:
                print(describe(case))
    # One evaluation of the toy model, so the C++ test can check its twin first.
    toy_x = torch.randn([2] + SHAPE[1:], generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64)
    toy_check = {"t": 537.25, "x": toy_x.flatten().tolist(), "shape": [2] + SHAPE[1:],
                 "out": harness.toy_model(toy_x, 537.25).flatten().tolist()}
    doc = {"version": 1, "seed": args.seed, "shape": SHAPE, "toy_model": harness.TOY_MODEL_DOC,
           "toy_check": toy_check,
           "diffusers_version": diffusers.__version__, "cases": cases}
    with open(args.out, "w") as fh:
        json.dump(doc, fh, allow_nan=False)
    print(f"diffusers_samplers: wrote {len(cases)} cases to {args.out} in {time.time() - start:.1f} s")
    return 0


def describe(case):
    d = case["diffusers_config"]
    keys = ["beta_schedule", "prediction_type", "timestep_spacing", "steps_offset", "num_train_timesteps",
            "solver_order", "solver_type", "algorithm_type", "lower_order_final", "euler_at_final",
            "use_karras_sigmas", "use_exponential_sigmas", "final_sigmas_type", "rescale_betas_zero_snr",
            "clip_sample", "thresholding", "set_alpha_to_one", "original_inference_steps",
            "timestep_scaling", "disable_corrector"]
    parts = [f"{k}={d[k]}" for k in keys if d.get(k) not in (None, False, [], 0)]
    if d.get("trained_betas"):
        parts.append("trained_betas")
    extra = " ".join(f"{k}={v}" for k, v in case["diffusers_step_kwargs"].items())
    flag = "" if case["compare"] == "all" else f"  [{case['compare']} only: {case['known_different'].split(':')[0]}]"
    f32 = f"  f32diff={case['float32_difference']:.1e}" if "float32_difference" in case else ""
    return f"  {case['id']:20s} steps={case['steps']:2d} {' '.join(parts)} {extra}{flag}{f32}"


if __name__ == "__main__":
    sys.exit(main())
