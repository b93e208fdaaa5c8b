#!/usr/bin/env python3
"""How far a bf16 generation on the CPU lands from the fp32 one, and how much faster it is.

Runs `fewstep generate` with --dtype fp32 and --dtype bf16 (everything else
the package's defaults, --fusion all) for each prompt with seeds
s .. s+N-1, and compares the 8-bit images the way `fewstep sweep` does
(docs/sweep.md): RMSE on the [0, 1] scale, PSNR = 20·log10(1 / RMSE), the
overall PSNR from the mean squared error over all images. Also reports the
largest pixel difference and the median sampling time (--stats-json) per
dtype. The issue's rule: bf16 may be the CPU default only at >= 40 dB.

Usage (from the repository root, after `ninja -C build fewstep`):
  .venv/bin/python bench/bf16/bf16_error.py [--model models/emoji] [--seeds 4] [--threads 2]
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = ["red apple", "watermelon", "dog face", "cat face", "frog", "red heart", "sun", "grinning face"]


def generate(args, prompt, dtype, out_dir):
    """Images (seed -> uint8 HxWx3) and the mean sampling time per image (ms) of one batch run."""
    stats = os.path.join(out_dir, "stats.json")
    cmd = [os.path.join(args.build, "fewstep"), "generate", "--model", args.model, "--prompt", prompt, "--seed",
           str(args.seed), "--batch-count", str(args.seeds), "--dtype", dtype, "--threads", str(args.threads),
           "--out", os.path.join(out_dir, "img.png"), "--stats-json", stats, "--quiet"]
    subprocess.run(cmd, check=True)
    images = {s: np.asarray(Image.open(os.path.join(out_dir, "img-%d.png" % s)).convert("RGB"))
              for s in range(args.seed, args.seed + args.seeds)}
    with open(stats, encoding="utf-8") as f:
        doc = json.load(f)
    return images, [doc["sampling_ms"] / doc["batch_count"]]


def main():
    ap = argparse.ArgumentParser(description="bf16 against fp32 on the CPU, over whole generations")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "emoji"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=4, help="images per prompt")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sq_errors, worst, times = [], 0, {"fp32": [], "bf16": []}
    print("| prompt | PSNR bf16 vs fp32 (dB) | max pixel diff |")
    print("| --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for i, prompt in enumerate(PROMPTS):
            images = {}
            for dtype in ("fp32", "bf16"):
                out_dir = os.path.join(tmp, "%d-%s" % (i, dtype))
                os.makedirs(out_dir)
                images[dtype], ms = generate(args, prompt, dtype, out_dir)
                times[dtype] += ms
            errs = [((images["fp32"][s].astype(np.float64) - images["bf16"][s].astype(np.float64)) / 255.0) ** 2
                    for s in images["fp32"]]
            mse = float(np.mean([e.mean() for e in errs]))
            sq_errors.append(mse)
            diff = max(int(np.abs(images["fp32"][s].astype(int) - images["bf16"][s].astype(int)).max())
                       for s in images["fp32"])
            worst = max(worst, diff)
            psnr = math.inf if mse == 0 else 20 * math.log10(1 / math.sqrt(mse))
            print("| %s | %.1f | %d |" % (prompt, psnr, diff))
    mse = statistics.fmean(sq_errors)
    psnr = math.inf if mse == 0 else 20 * math.log10(1 / math.sqrt(mse))
    print("\noverall: PSNR %.1f dB over %d images (largest pixel difference %d of 255); %s the 40 dB rule"
          % (psnr, len(PROMPTS) * args.seeds, worst, "meets" if psnr >= 40 else "misses"))
    if times["fp32"] and times["bf16"]:
        f, b = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        print("median sampling_ms per image: fp32 %.1f, bf16 %.1f (%.2fx), %d threads" % (f, b, f / b, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
