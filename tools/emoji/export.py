#!/usr/bin/env python3
"""Exports the emoji model's EMA weights as a fewstep model package in models/emoji/.

Writes (atomically per file):
  unet.pt          TorchScript, block-wise contract (time_embed, input_blocks,
                   middle_block, output_blocks, out); its forward() is the
                   monolithic contract too. Parameters stored in fp16.
  text_encoder.pt  TorchScript, forward(input_ids [B,24] int64) -> [B,24,192]; fp16.
  model.json       manifest (format_version 1), scheduler in diffusers' keys.
The tokenizer (tokenizer/vocab.json, merges.txt) is written by bpe.py train.

fp16 is a storage format: fewstep's runtime converts modules to the run dtype
(fp32 on CPU) after loading. Before saving, the script checks that the
scripted block-wise path equals the eager model in fp32 (max abs error printed).

It then writes models/emoji/checkpoint/checkpoint.pt: the raw weights as an
int8 difference from the fp16 EMA just exported (checkpoint.py), so that
training resumes from the committed files.

Source: the local training state (data/emoji_train_state.pt) when it exists and
is not older than the committed checkpoint, else the committed checkpoint
(re-export). Usage: export.py [--state data/emoji_train_state.pt]
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import checkpoint  # noqa: E402
from model import EmojiModel  # noqa: E402
from sample import SAMPLERS  # noqa: E402
from train import CKPT, PKG, STATE  # noqa: E402

LICENSE = ("Weights: Apache-2.0, trained on Noto Color Emoji artwork (Apache-2.0; font "
           "SIL OFL 1.1) with Unicode CLDR English annotations (Unicode-DFS-2016)")
ATTRIBUTION = ("Noto Color Emoji (c) Google LLC, Apache-2.0 images in an SIL OFL 1.1 font, "
               "Debian package fonts-noto-color-emoji; CLDR annotations (c) Unicode, Inc., "
               "Unicode-DFS-2016, Debian package unicode-cldr-core")


def blockwise(unet, x, t, ctx):
    """Runs the block-wise contract of fewstep by hand, looking the blocks up by name."""
    emb = unet.time_embed(t)
    h = x
    skips = []
    for blk in unet.input_blocks.children():
        h = blk(h, emb, ctx)
        skips.append(h)
    h = unet.middle_block(h, emb, ctx)
    for blk in unet.output_blocks.children():
        h = blk(torch.cat([h, skips.pop()], dim=1), emb, ctx)
    return unet.out(h)


def save_script(module, path):
    tmp = path + ".tmp"
    torch.jit.save(module, tmp)
    os.replace(tmp, path)


def manifest(ck, steps_done, defaults):
    cfg = ck["config"]
    return {
        "format_version": 1,
        "name": "fewstep-emoji-32",
        "kind": "pixel",
        "sample_size": [cfg["res"], cfg["res"]],
        "in_channels": 3,
        "vae_scale_factor": 1,
        "scheduler": {
            "num_train_timesteps": cfg["num_train_timesteps"],
            "beta_schedule": cfg["beta_schedule"],
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "trained_betas": None,
            "prediction_type": cfg["prediction_type"],
            "timestep_spacing": "trailing",
            "steps_offset": 0,
            "rescale_betas_zero_snr": False,
            "clip_sample": True,
            "clip_sample_range": 1.0,
            "thresholding": False,
            "set_alpha_to_one": True,
        },
        "unet": {"file": "unet.pt", "form": "blocks", "downsample_factor": 4},
        "text_encoder": {"file": "text_encoder.pt", "context_length": cfg["context_length"],
                         "hidden_size": cfg["d_text"]},
        "tokenizer": {"vocab": "tokenizer/vocab.json", "merges": "tokenizer/merges.txt"},
        "vae_decoder": None,
        "defaults": {"sampler": defaults["sampler"], "steps": defaults["steps"],
                     "cfg_scale": defaults["cfg_scale"], "width": cfg["res"], "height": cfg["res"]},
        "license": LICENSE,
        "attribution": ATTRIBUTION,
        "training": {"steps": steps_done, "batch": ck.get("batch"),
                     "train_seconds": round(ck["train_s"])},
    }


def main():
    ap = argparse.ArgumentParser(description="export the emoji model package")
    ap.add_argument("--state", default=STATE)
    ap.add_argument("--cfg-scale", type=float, default=None,
                    help="the package's default CFG scale (default: keep model.json's). Chosen by "
                         "the adherence figures and contact sheets at several scales (model card)")
    ap.add_argument("--sampler", choices=SAMPLERS, default=None,
                    help="the package's default sampler (default: keep model.json's); one that "
                         "sample.py also runs, so that the contact sheet shows the defaults")
    ap.add_argument("--steps", type=int, default=None,
                    help="the package's default step count (default: keep model.json's)")
    args = ap.parse_args()
    # Generation defaults: kept from the current model.json (first export: DDIM, 8 steps, CFG 5).
    defaults = {"sampler": "ddim", "steps": 8, "cfg_scale": 5.0}
    if os.path.exists(os.path.join(PKG, "model.json")):
        with open(os.path.join(PKG, "model.json"), encoding="utf-8") as f:
            defaults.update({k: v for k, v in json.load(f)["defaults"].items() if k in defaults})
    for key in ("sampler", "steps", "cfg_scale"):
        if getattr(args, key) is not None:
            defaults[key] = getattr(args, key)
    found = checkpoint.newest(args.state, CKPT, PKG)
    if found is None:
        sys.exit("export.py: neither %s nor %s exists" % (args.state, CKPT))
    _, raw, ema_sd, ck = found
    raw = {k: v.float() for k, v in raw.items()}
    cfg = ck["config"]
    tok = bpe.Tokenizer(os.path.join(PKG, "tokenizer"))
    model = EmojiModel(len(tok.vocab), cfg["context_length"], cfg["d_text"], cfg["text_layers"],
                       cfg["channels"], cfg["attn"])
    # the package holds fp16: round first, so that the delta is taken from what is stored
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                           for k, v in ema_sd.items()})
    model.eval()
    args.out = PKG
    unet = torch.jit.script(model.unet)
    text = torch.jit.script(model.text_encoder)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([999.0, 124.0])
    ids = torch.tensor([tok.encode_padded("red apple", 24), tok.encode_padded("", 24)])
    with torch.no_grad():
        ref = model.unet(x, t, model.text_encoder(ids))
        got = blockwise(unet, x, t, text(ids))
    err = (ref - got).abs().max().item()
    print("block-wise scripted vs eager max abs error %.3g" % err)
    if not err < 1e-4:
        sys.exit("export check failed")
    unet = torch.jit.script(model.unet.half())
    text = torch.jit.script(model.text_encoder.half())
    os.makedirs(args.out, exist_ok=True)
    save_script(unet, os.path.join(args.out, "unet.pt"))
    save_script(text, os.path.join(args.out, "text_encoder.pt"))
    tmp = os.path.join(args.out, "model.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest(ck, ck["step"], defaults), f, indent=2)
    os.replace(tmp, os.path.join(args.out, "model.json"))
    # the fp16 files reload and, converted to fp32, still match
    u2 = torch.jit.load(os.path.join(args.out, "unet.pt")).float()
    t2 = torch.jit.load(os.path.join(args.out, "text_encoder.pt")).float()
    with torch.no_grad():
        got = blockwise(u2, x, t, t2(ids))
    print("fp16 package vs fp32 eager max abs error %.3g; step %d -> %s"
          % ((ref - got).abs().max().item(), ck["step"], args.out))
    ema16 = {k: v.half() if v.is_floating_point() else v for k, v in ema_sd.items()}
    meta = {k: ck[k] for k in ("step", "ema_n", "train_s", "config", "batch", "lr") if k in ck}
    checkpoint.save(CKPT, raw, ema16, meta)
    raw2, ema2, _ = checkpoint.load(CKPT, PKG)
    worst = max((raw2[k] - raw[k]).abs().max().item() for k in raw if raw[k].is_floating_point())
    assert all(torch.equal(ema2[k], ema16[k].float()) for k in ema16 if ema16[k].is_floating_point())
    print("checkpoint %s: %d bytes, raw weights max abs rounding %.3g"
          % (CKPT, os.path.getsize(CKPT), worst))


if __name__ == "__main__":
    main()
