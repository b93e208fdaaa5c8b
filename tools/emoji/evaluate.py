#!/usr/bin/env python3
"""Prompt-adherence metrics of the emoji model (fewstep issue 4).

For every caption of eval_captions.json's "train" (50) and "heldout" (20)
lists, the model draws one image per seed (the package defaults' sampler,
steps and CFG scale from model.json, unless --sampler / --steps / --cfg-scale
say otherwise; sample.generate). Each image's nearest neighbour in pixel space (L2 over the
32x32x3 uint8 values) is looked up among all 3,635 dataset images (the
training images plus the 20 held-out ones, so that a held-out caption can be
matched at all). Two rates are reported:
  exact: the neighbour's caption equals the prompt;
  word:  the neighbour's caption shares a content word with the prompt
         (words [a-z0-9]+, lower-cased, minus STOP).
Chance baseline: the same two rates when the "generated" image is a uniformly
random dataset image (its nearest neighbour is itself), averaged over
--baseline-draws draws per prompt with a fixed seed.

Usage: evaluate.py [--ckpt ...] [--seeds 0,1,2,3] -> prints a Markdown table and
writes models/emoji/adherence.json.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sample import SAMPLERS, fill_package_defaults, generate, load_ema  # noqa: E402
from train import CKPT, PKG, ROOT  # noqa: E402

STOP = {"a", "an", "the", "of", "with", "and", "in", "on", "at", "for", "to", "flag", "button",
        "skin", "tone", "light", "medium", "dark"}


def words(caption):
    return set(re.findall(r"[a-z0-9]+", caption.lower())) - STOP


def rates(prompts, neighbour_caps):
    exact = np.mean([p == n for p, n in zip(prompts, neighbour_caps)])
    word = np.mean([bool(words(p) & words(n)) for p, n in zip(prompts, neighbour_caps)])
    return float(exact), float(word)


def main():
    ap = argparse.ArgumentParser(description="emoji prompt adherence")
    ap.add_argument("--ckpt", default=CKPT)
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--baseline-draws", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the package's (model.json)")
    ap.add_argument("--steps", type=int, default=None, help="default: the package's (model.json)")
    ap.add_argument("--cfg-scale", type=float, default=None, help="default: the package's (model.json)")
    ap.add_argument("--out", default=os.path.join(PKG, "adherence.json"))
    args = ap.parse_args()
    fill_package_defaults(args)
    torch.set_num_threads(args.threads)
    d = np.load(os.path.join(ROOT, "data", "emoji_32.npz"))
    data = d["images"].reshape(len(d["images"]), -1).astype(np.float32)
    caps = [str(c) for c in d["captions"]]
    with open(os.path.join(HERE, "eval_captions.json"), encoding="utf-8") as f:
        sets = json.load(f)
    model, tok, ck = load_ema(args.ckpt)
    seeds = [int(s) for s in args.seeds.split(",")]
    rng = np.random.default_rng(0)
    result = {"step": ck["step"], "seeds": seeds, "sampler": args.sampler, "steps": args.steps,
              "cfg_scale": args.cfg_scale}
    for name in ("train", "heldout"):
        prompts = [p for p in sets[name] for _ in seeds]
        imgs = generate(model, tok, prompts, [s for _ in sets[name] for s in seeds], args.sampler, args.steps,
                        args.cfg_scale)
        flat = imgs.reshape(len(imgs), -1).astype(np.float32)
        dist = (flat ** 2).sum(1)[:, None] - 2 * flat @ data.T + (data ** 2).sum(1)[None]
        nn = [caps[i] for i in dist.argmin(1)]
        ex, wd = rates(prompts, nn)
        rand_caps = [caps[i] for i in rng.integers(0, len(caps), len(sets[name]) * args.baseline_draws)]
        bex, bwd = rates([p for p in sets[name] for _ in range(args.baseline_draws)], rand_caps)
        result[name] = {"exact": ex, "word": wd, "chance_exact": bex, "chance_word": bwd,
                        "n_images": len(prompts),
                        "examples": dict(list(zip(prompts, nn))[:: len(seeds)][:10])}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    print("step %d, %d seeds per caption, %s %d steps, CFG %g" % (ck["step"], len(seeds), args.sampler, args.steps,
                                                               args.cfg_scale))
    print("| captions | exact label | shared content word | chance exact | chance word |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("train", "heldout"):
        r = result[name]
        print("| %s (%d) | %.1f%% | %.1f%% | %.2f%% | %.1f%% |" % (
            name, len(sets[name]), 100 * r["exact"], 100 * r["word"],
            100 * r["chance_exact"], 100 * r["chance_word"]))


if __name__ == "__main__":
    main()
