#!/usr/bin/env python3
"""Python reference sampler for the emoji model, and the contact sheet.

DDIM with eta = 0 (Song et al. 2021, eq. 12) on "trailing" timestep spacing
(Lin et al. 2024, table 2; diffusers' DDIMScheduler with
timestep_spacing="trailing", set_alpha_to_one=True), v-prediction converted as
x0 = sqrt(ab) x - sqrt(1-ab) v and eps = sqrt(1-ab) x + sqrt(ab) v
(Salimans & Ho 2022), classifier-free guidance (Ho & Salimans 2022, eq. 6)
with the empty prompt as the unconditional input. With clip_sample, x0 is
clamped to [-1, 1] and eps kept, as diffusers does; the C++ runtime gives the
same pixels for the same seed.

Usage: sample.py [--ckpt models/emoji/checkpoint/checkpoint.pt] [--out models/emoji/contact_sheet.png]
Noise: torch.Generator().manual_seed(seed), randn [1,3,32,32] per image.
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
    """Sets args.steps / args.cfg_scale from the package defaults where the command line left them None."""
    defaults = package_defaults()
    args.steps = defaults["steps"] if args.steps is None else args.steps
    args.cfg_scale = defaults["cfg_scale"] if args.cfg_scale is None else args.cfg_scale


def trailing_timesteps(steps, n=1000):
    return [int(round(n - i * n / steps)) - 1 for i in range(steps)]


@torch.no_grad()
def ddim(model, tok, prompts, seeds, steps=8, cfg_scale=5.0, ctx_len=24, clip_sample=True):
    """prompts/seeds: equal-length lists. Returns uint8 [N,32,32,3].
    clip_sample (the package's scheduler setting) clamps x0 to [-1, 1] each step."""
    ab = cosine_alphas_cumprod(1000).double()
    ids = torch.tensor([tok.encode_padded(p, ctx_len) for p in prompts])
    empty = torch.tensor([tok.encode_padded("", ctx_len)] * len(prompts))
    ctx = model.text_encoder(torch.cat([ids, empty]))
    x = torch.cat([torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(s))
                   for s in seeds]).double()
    ts = trailing_timesteps(steps)
    for i, t in enumerate(ts):
        tt = torch.full((2 * len(prompts),), float(t))
        v = model.unet(torch.cat([x, x]).float(), tt, ctx).double()
        vc, vu = v.chunk(2)
        v = vu + cfg_scale * (vc - vu)
        a, s = ab[t].sqrt(), (1 - ab[t]).sqrt()
        x0 = a * x - s * v
        eps = s * x + a * v
        if clip_sample:  # as diffusers' DDIMScheduler: clamp x0, keep eps
            x0 = x0.clamp(-1, 1)
        ap = ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        x = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
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
    ap = argparse.ArgumentParser(description="emoji model contact sheet (DDIM, CFG)")
    ap.add_argument("--ckpt", default=CKPT)
    ap.add_argument("--out", default=os.path.join(PKG, "contact_sheet.png"))
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
    imgs = ddim(model, tok, ps, ss, args.steps, args.cfg_scale)
    contact_sheet(imgs, prompts, seeds, args.out)
    print("step %d -> %s (%d bytes)" % (ck["step"], args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
