"""Harness that runs diffusers' schedulers as a float64 oracle for fewstep.

Three pieces, shared by `diffusers_samplers.py`:

* `toy_model(x, t)`: the deterministic closed-form "network" both sides use.
  tests/samplers_peer/toy_model.h implements the same formula in C++.
* `promoted_to_float64(modules)`: diffusers builds betas, alphas_cumprod and
  sigmas in float32 (`torch.float32`, `np.float32` written in the scheduler
  modules). Inside this context those two names resolve to float64 in the
  given scheduler modules only (and torch's default dtype is float64), so
  the oracle runs diffusers' own algorithm
  with float64 schedules. Differences from fewstep at the 1e-6 level are then
  algorithmic, not float32 rounding. `--check-promotion` in the driver shows
  that promotion changes results only at float32's rounding level.
* `injected_noise(modules)`: replaces `randn_tensor` in the scheduler modules
  by a function returning the noise planned for the current step, so that a
  stochastic scheduler consumes exactly the per-step noise the JSON records.

Nothing here is imported by the runtime; it is a test oracle.
"""
import contextlib
import math
import types

import numpy as np
import torch

#: Training-timestep scale of the toy model's time dependence.
TOY_T_SCALE = 1000.0

TOY_MODEL_DOC = (
    "out[r,k] = tanh(a*x[r,k] + 0.3*sin(0.7*k + 2*tau)) + 0.1*(1-tau)*x[r,(k+1) mod n], "
    "a = 0.8 + 0.5*cos(3*tau), tau = t/1000; x is [R, C, H, W] float64 flattened per row "
    "to n = C*H*W elements, k the flat index within the row, t the model timestep"
)


def toy_model(x: torch.Tensor, t) -> torch.Tensor:
    """Deterministic toy network: smooth, cheap, couples neighbouring elements.

    x: [R, C, H, W] float64; t: the model timestep (python number or 0-d
    tensor, any dtype), the same value for every row. Returns the raw model
    output shaped like x, float64. The formula is TOY_MODEL_DOC.
    """
    tau = float(t) / TOY_T_SCALE
    rows = x.shape[0]
    flat = x.reshape(rows, -1).to(torch.float64)
    n = flat.shape[1]
    k = torch.arange(n, dtype=torch.float64)
    a = 0.8 + 0.5 * math.cos(3.0 * tau)
    b = 0.3 * torch.sin(0.7 * k + 2.0 * tau)
    neighbour = torch.roll(flat, shifts=-1, dims=1)  # neighbour[r, k] = flat[r, (k+1) mod n]
    out = torch.tanh(a * flat + b) + 0.1 * (1.0 - tau) * neighbour
    return out.reshape(x.shape)


class _Float64View(types.ModuleType):
    """A module proxy whose `float32` attribute is the real module's float64."""

    def __init__(self, real):
        super().__init__(real.__name__)
        self.__dict__["_real"] = real

    def __getattr__(self, name):
        real = self.__dict__["_real"]
        if name == "float32":
            return real.float64
        return getattr(real, name)


@contextlib.contextmanager
def promoted_to_float64(modules, enabled=True):
    """Within the block, `torch.float32`/`np.float32` mean float64 in `modules`,
    and torch's default dtype is float64 (LCMScheduler multiplies its int64
    timestep by a python float, which would otherwise give float32)."""
    saved = []
    default_dtype = torch.get_default_dtype()
    try:
        if enabled:
            torch.set_default_dtype(torch.float64)
            for mod in modules:
                saved.append((mod, mod.torch, mod.np))
                mod.torch = _Float64View(torch)
                mod.np = _Float64View(np)
        yield
    finally:
        torch.set_default_dtype(default_dtype)
        for mod, t, n in saved:
            mod.torch, mod.np = t, n


class NoisePlan:
    """Per-step noise handed to diffusers' `randn_tensor` calls.

    The driver sets `step` before each scheduler.step call; a draw returns
    `noise[step]` (a [shape] float64 tensor), or zeros for a step listed in
    `zero_steps`. `draws` records the step index of every draw, so the JSON
    can say which steps consumed noise.
    """

    def __init__(self, noise):
        self.noise = noise
        self.step = None
        self.draws = []
        self.zero_steps = set()  # steps whose draws return zeros instead

    def randn_tensor(self, shape, generator=None, device=None, dtype=None, layout=None):
        if self.step is None or self.step >= len(self.noise):
            raise RuntimeError(f"unplanned noise draw at step {self.step}")
        planned = self.noise[self.step]
        if tuple(shape) != tuple(planned.shape):
            raise RuntimeError(f"noise shape {tuple(shape)} != planned {tuple(planned.shape)}")
        self.draws.append(self.step)
        if self.step in self.zero_steps:
            planned = torch.zeros_like(planned)
        return planned.clone().to(dtype if dtype is not None else torch.float64)


@contextlib.contextmanager
def injected_noise(modules, plan):
    """Within the block, `randn_tensor` in `modules` draws from `plan`."""
    saved = [(mod, getattr(mod, "randn_tensor", None)) for mod in modules]
    try:
        for mod in modules:
            if hasattr(mod, "randn_tensor"):
                mod.randn_tensor = plan.randn_tensor
        yield plan
    finally:
        for mod, fn in saved:
            if fn is not None:
                mod.randn_tensor = fn


def runtime_noise(shape, seed, steps):
    """(unit noise, [step noise]) as fewstep's sample() draws them
    (samplers/sample.h): one CPU generator seeded with `seed`; the unit noise
    is its first draw, `torch.randn(shape, float32)` (seeded_unit_noise),
    returned as float64; the step noise of steps 0..steps-1 follows, one
    float64 draw each (StepNoise with skip 1 and float64 sampler math).
    The C++ test checks that StepNoise reproduces these values."""
    gen = torch.Generator().manual_seed(seed)
    unit = torch.randn(shape, generator=gen, dtype=torch.float32).to(torch.float64)
    return unit, [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(steps)]
