#!/usr/bin/env python3
"""Reference inference schedules for fewstep's sampler tests.

Recomputes, with numpy only, the timestep and sigma formulas that diffusers
documents in its schedulers' ``set_timesteps`` (DDIMScheduler/DDPMScheduler,
EulerDiscreteScheduler/HeunDiscreteScheduler, DPMSolverMultistepScheduler/
UniPCMultistepScheduler, LCMScheduler, FlowMatchEulerDiscreteScheduler) and
the beta schedules of their ``__init__``; Karras et al. 2022 Eq. 5 for Karras
sigmas. diffusers itself is not imported: the formulas are written out here.

  sampler_schedules.py --write tests/samplers/data/schedules.json
  sampler_schedules.py --check tests/samplers/data/schedules.json   (ctest; exit 77 without numpy)
"""
import argparse
import json
import math
import sys

from oracle_env import import_or_skip

np = import_or_skip("numpy")

T = 1000
STEPS = [1, 2, 3, 4, 8, 10, 50, 1000]


def betas(schedule, start=0.00085, end=0.012):
    if schedule == "linear":
        return np.linspace(start, end, T, dtype=np.float64)
    if schedule == "scaled_linear":
        return np.linspace(start ** 0.5, end ** 0.5, T, dtype=np.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])
    raise ValueError(schedule)


def zero_snr(b):
    """Lin et al. 2024, Algorithm 1."""
    ac = np.cumprod(1.0 - b)
    s = np.sqrt(ac)
    s0, sT = s[0], s[-1]
    s = (s - sT) * s0 / (s0 - sT)
    a = s ** 2
    a = np.concatenate([a[:1], a[1:] / a[:-1]])
    return 1.0 - a


def timesteps(family, spacing, n, offset):
    """diffusers' set_timesteps per family (the formulas as written there)."""
    if family == "dpm":
        if spacing == "linspace":
            return np.linspace(0, T - 1, n + 1).round()[::-1][:-1].astype(np.float64)
        if spacing == "leading":
            r = T // (n + 1)
            return (np.arange(0, n + 1) * r).round()[::-1][:-1].astype(np.float64) + offset
        return np.arange(T, 0, -T / n).round() - 1.0
    if spacing == "leading":
        r = T // n
        return (np.arange(0, n) * r).round()[::-1].astype(np.float64) + offset
    if spacing == "trailing":
        return np.round(np.arange(T, 0, -T / n)) - 1.0
    if family == "euler":  # EulerDiscreteScheduler: float32 linspace, not rounded
        return np.linspace(0, T - 1, n, dtype=np.float32)[::-1].astype(np.float64)
    return np.linspace(0, T - 1, n).round()[::-1].astype(np.float64)


def sigma_to_t(sigma, log_sigmas):
    """diffusers' _sigma_to_t: linear interpolation in log(sigma)."""
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high = low + 1
    lo, hi = log_sigmas[low], log_sigmas[high]
    w = np.clip((lo - log_sigma) / (lo - hi), 0, 1)
    return (1 - w) * low + w * high


def karras(s_min, s_max, n, rho=7.0):
    ramp = np.linspace(0, 1, n)
    lo, hi = s_min ** (1 / rho), s_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def flow_shift(t, shift):
    return shift * t / (1 + (shift - 1) * t)


def lcm_timesteps(n, original=50):
    k = T // original
    origin = (np.arange(1, original + 1) * k - 1)[::-1]
    idx = np.floor(np.linspace(0, original, num=n, endpoint=False)).astype(np.int64)
    return origin[idx].astype(np.float64)


def build():
    ac_sd = np.cumprod(1.0 - betas("scaled_linear"))
    k_sd = np.sqrt((1 - ac_sd) / ac_sd)
    out = {"num_train_timesteps": T, "note": __doc__.strip().splitlines()[0]}
    idx = [0, 1, 2, 10, 100, 500, 998, 999]
    out["alphas_cumprod_index"] = idx
    out["alphas_cumprod"] = {
        name: np.cumprod(1.0 - b)[idx].tolist()
        for name, b in [("linear", betas("linear", 0.0001, 0.02)), ("scaled_linear", betas("scaled_linear")),
                        ("squaredcos_cap_v2", betas("squaredcos_cap_v2")),
                        ("scaled_linear_zero_snr", zero_snr(betas("scaled_linear")))]
    }
    rows = []
    for family in ["ddim", "euler", "dpm"]:
        for spacing in ["leading", "trailing", "linspace"]:
            for n in STEPS:
                for offset in ([0, 1] if spacing == "leading" else [0]):
                    t = timesteps(family, spacing, n, offset)
                    row = {"family": family, "spacing": spacing, "steps": n, "steps_offset": offset,
                           "timesteps": t.tolist()}
                    if n <= 50 and t.max() <= T - 1:
                        # k-sigmas as diffusers interpolates them (linear in sigma), SD 1.5 betas
                        row["k_sigmas"] = np.interp(t, np.arange(T), k_sd).tolist()
                    rows.append(row)
    out["spacings"] = rows
    log_k = np.log(k_sd)
    out["karras"] = []
    for n in [1, 2, 10, 25]:
        s = karras(k_sd[0], k_sd[-1], n)
        out["karras"].append({"steps": n, "k_sigmas": s.tolist(), "timesteps": sigma_to_t(s, log_k).tolist()})
    out["exponential"] = []
    for n in [2, 10]:
        s = np.exp(np.linspace(math.log(k_sd[-1]), math.log(k_sd[0]), n))
        out["exponential"].append({"steps": n, "k_sigmas": s.tolist(), "timesteps": sigma_to_t(s, log_k).tolist()})
    out["flow"] = []
    for shift in [1.0, 3.0]:
        for n in [1, 4, 10, 50]:
            s_min = flow_shift(1.0 / T, shift)  # FlowMatchEulerDiscrete's sigma_min (sigma_max = 1)
            t = np.linspace(1.0 * T, s_min * T, n) / T
            out["flow"].append({"shift": shift, "steps": n, "sigmas": flow_shift(t, shift).tolist()})
    out["lcm"] = [{"steps": n, "timesteps": lcm_timesteps(n).tolist()} for n in [1, 2, 4, 8, 50]]
    return out


def same(a, b, path="$"):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], f"{path}.{k}") for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, path) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        ok = math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
        if not ok:
            print(f"mismatch at {path}: {a} vs {b}")
        return ok
    return a == b


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write")
    g.add_argument("--check")
    a = p.parse_args()
    ref = build()
    if a.write:
        with open(a.write, "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        return 0
    with open(a.check) as f:
        committed = json.load(f)
    if not same(json.loads(json.dumps(ref)), committed):
        print("the committed schedule reference differs from the recomputed one")
        return 1
    print("schedule reference matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
