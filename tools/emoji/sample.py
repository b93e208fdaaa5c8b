#!/usr/bin/env python3
"""Python reference sampler for the emoji model, and the contact sheet.

DDIM with eta = 0 (Song et al. 2021, eq. 12) or Euler ancestral (k-diffusion's
sample_euler_ancestral), on "trailing" timestep spacing (Lin et al. 2024,
table 2; diffusers' DDIMScheduler with timestep_spacing="trailing",
set_alpha_to_one=True), v-prediction converted as
x0 = sqrt(ab) x - sqrt(1-ab) v and eps = sqrt(1-ab) x + sqrt(ab) v
(Salimans & Ho 2022), classifier-free guidance (Ho & Salimans 2022, eq. 6)
with the empty prompt as the unconditional input. With clip_sample, x0 is
clamped to [-1, 1] and eps kept, as diffusers does; the C++ runtime gives the
same pixels for the same seed, up to float32 rounding.

Usage: sample.py [--ckpt models/emoji/checkpoint/checkpoint.pt] [--out models/emoji/contact_sheet.png]
Noise: torch.Generator().manual_seed(seed), randn [1,3,32,32] per image; an
ancestral sampler's step noise continues the same generator.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import checkpoint  # noqa: E402
from model import EmojiModel  # noqa: E402
from train import CKPT, PKG, cosine_alphas_cumprod  # noqa: E402


def load_ema(path=CKPT):
    """Returns (EMA model in fp32 eval mode, tokenizer, checkpoint dict)."""
    _, ema, ck = checkpoint.load(path, PKG)
    cfg = ck["config"]
    tok = bpe.Tokenizer(os.path.join(PKG, "tokenizer"))
    m = EmojiModel(len(tok.vocab), cfg["context_length"], cfg["d_text"], cfg["text_layers"],
                   cfg["channels"], cfg["attn"])
    m.load_state_dict(ema)
    return m.eval(), tok, ck


def package_defaults():
    """The package's generation defaults (model.json "defaults": steps, cfg_scale, ...),
    so that the contact sheet and the adherence figures use what fewstep uses."""
    with open(os.path.join(PKG, "model.json"), encoding="utf-8") as f:
        return json.load(f)["defaults"]


def fill_package_defaults(args):
    """Sets args.sampler / args.steps / args.cfg_scale from the package defaults where the
    command line left them None."""
    defaults = package_defaults()
    args.sampler = defaults["sampler"] if args.sampler is None else args.sampler
    args.steps = defaults["steps"] if args.steps is None else args.steps
    args.cfg_scale = defaults["cfg_scale"] if args.cfg_scale is None else args.cfg_scale


def trailing_timesteps(steps, n=1000):
    return [int(round(n - i * n / steps)) - 1 for i in range(steps)]


SAMPLERS = ("ddim", "euler_ancestral")


@torch.no_grad()
def generate(model, tok, prompts, seeds, sampler="ddim", steps=8, cfg_scale=5.0, ctx_len=24, clip_sample=True):
    """prompts/seeds: equal-length lists. Returns uint8 [N,32,32,3].

    sampler "ddim": eta 0 (Song et al. 2021, eq. 12).
    sampler "euler_ancestral": k-diffusion's Euler ancestral with eta 1 (the
      ancestral split of Ho et al. 2020, eq. 7): in k = sigma/alpha units,
      k_up = k_s sqrt(1 - (k_s/k_t)^2), k_down = sqrt(k_s^2 - k_up^2), then
      x_s = alpha_s x0 + (sigma_down/sigma_t)(x_t - alpha_t x0) + sigma_up z.
      Each image's z continues its seed's generator after the initial noise,
      as fewstep and diffusers' one-generator pipelines draw it.
    clip_sample (the package's scheduler setting) clamps x0 to [-1, 1] each
    step, as fewstep's denoiser does for every sampler."""
    if sampler not in SAMPLERS:
        raise ValueError("sampler %r: the Python reference has %s" % (sampler, ", ".join(SAMPLERS)))
    ab = cosine_alphas_cumprod(1000).double()
    ids = torch.tensor([tok.encode_padded(p, ctx_len) for p in prompts])
    empty = torch.tensor([tok.encode_padded("", ctx_len)] * len(prompts))
    ctx = model.text_encoder(torch.cat([ids, empty]))
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    def draw():
        return torch.cat([torch.randn(1, 3, 32, 32, generator=g) for g in gens]).double()

    x = draw()
    ts = trailing_timesteps(steps)
    one = torch.tensor(1.0, dtype=torch.float64)
    for i, t in enumerate(ts):
        tt = torch.full((2 * len(prompts),), float(t))
        v = model.unet(torch.cat([x, x]).float(), tt, ctx).double()
        vc, vu = v.chunk(2)
        v = vu + cfg_scale * (vc - vu)
        a_t, s_t = ab[t].sqrt(), (1 - ab[t]).sqrt()
        x0 = a_t * x - s_t * v
        eps = s_t * x + a_t * v
        if clip_sample:  # as diffusers' DDIMScheduler: clamp x0, keep eps
            x0 = x0.clamp(-1, 1)
        ab_s = ab[ts[i + 1]] if i + 1 < len(ts) else one
        a_s, s_s = ab_s.sqrt(), (1 - ab_s).sqrt()
        if sampler == "ddim":
            x = a_s * x0 + s_s * eps
            continue
        q = (s_s * a_t) / (a_s * s_t)
        s_up = s_s * torch.clamp(1 - q * q, min=0).sqrt().clamp(max=1)
        s_down = torch.clamp(s_s * s_s - s_up * s_up, min=0).sqrt()
        x = a_s * x0 + (s_down / s_t) * (x - a_t * x0)
        if s_up > 0:
            x = x + s_up * draw()
    img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return img.permute(0, 2, 3, 1).numpy()


def contact_sheet(images, prompts, seeds, path, scale=4):
    """images uint8 [len(prompts)*len(seeds),32,32,3], row-major by prompt."""
    cell = 32 * scale
    label_w = 170
    sheet = Image.new("RGB", (label_w + cell * len(seeds), cell * len(prompts) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for j, s in enumerate(seeds):
        draw.text((label_w + j * cell + 4, 4), "seed %d" % s, fill="black")
    for i, p in enumerate(prompts):
        draw.text((4, 20 + i * cell + cell // 2 - 6), p, fill="black")
        for j in range(len(seeds)):
            im = Image.fromarray(images[i * len(seeds) + j]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(im, (label_w + j * cell, 20 + i * cell))
    sheet.save(path, optimize=True)


def main():
    ap = argparse.ArgumentParser(description="emoji model contact sheet (package defaults)")
    ap.add_argument("--ckpt", default=CKPT)
    ap.add_argument("--out", default=os.path.join(PKG, "contact_sheet.png"))
    ap.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the package's (model.json)")
    ap.add_argument("--steps", type=int, default=None, help="default: the package's (model.json)")
    ap.add_argument("--cfg-scale", type=float, default=None, help="default: the package's (model.json)")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    fill_package_defaults(args)
    torch.set_num_threads(args.threads)
    model, tok, ck = load_ema(args.ckpt)
    with open(os.path.join(HERE, "eval_captions.json"), encoding="utf-8") as f:
        prompts = json.load(f)["contact_sheet"]
    seeds = [int(s) for s in args.seeds.split(",")]
    ps = [p for p in prompts for _ in seeds]
    ss = [s for _ in prompts for s in seeds]
    imgs = generate(model, tok, ps, ss, args.sampler, args.steps, args.cfg_scale)
    contact_sheet(imgs, prompts, seeds, args.out)
    print("step %d -> %s (%d bytes)" % (ck["step"], args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
