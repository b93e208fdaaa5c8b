#!/usr/bin/env python3
"""Trains the emoji model (text encoder + pixel UNet) on data/emoji_32.npz.

Recipe:
  - cosine noise schedule ("squaredcos_cap_v2", Nichol & Dhariwal 2021, eq. 17,
    betas capped at 0.999), 1000 training timesteps;
  - v-prediction (Salimans & Ho 2022, sec. 4): v = sqrt(ab)*eps - sqrt(1-ab)*x0;
  - min-SNR-gamma loss weighting (Hang et al. 2023, eq. 9 for v):
    w = min(SNR, gamma) / (SNR + 1), gamma = 5;
  - AdamW, linear learning-rate warm-up (re-done after every resume because the
    optimiser state is not kept), gradient clipping at 1;
  - with --decay-min M and --stop-at, the learning rate falls linearly to a
    tenth over the run's last M minutes (a linear variant of the
    warmup-stable-decay schedule of Hu et al. 2024, MiniCPM, whose decay is
    exponential), so that every session ends on a decayed model; the next
    session resumes at the full rate;
  - EMA with warm-up: decay = min(ema_max, (1 + n) / (10 + n)), n = steps taken;
  - classifier-free guidance dropout: 10% of captions replaced by "";
  - skin-tone variants sampled at a quarter of the weight of other emoji;
  - the 20 held-out captions of eval_captions.json never enter training.

Checkpoints:
  data/emoji_train_state.pt   fp32 weights + EMA + optimiser, every --save-min minutes
                              and at the end (not committed)
  committed: the package's fp16 EMA weights (models/emoji/*.pt) plus
             models/emoji/checkpoint/checkpoint.pt (raw weights as an int8
             difference from them; see checkpoint.py), both written by
             export.py from the local state. A run resumes from them when the
             local state is absent or older.
Loss log: models/emoji/loss.csv (appended every --log-every steps).

Resume: nice -n 19 .venv/bin/python tools/emoji/train.py  (same command as the first start)
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import checkpoint  # noqa: E402
import model as model_lib  # noqa: E402
from model import EmojiModel, count  # noqa: E402

CONFIG = dict(channels=(48, 96, 144), attn=(False, True, True), d_text=192, text_layers=3,
              context_length=24, num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
              prediction_type="v_prediction", res=32)
PKG = os.path.join(ROOT, "models", "emoji")
CKPT = os.path.join(PKG, "checkpoint", "checkpoint.pt")
STATE = os.path.join(ROOT, "data", "emoji_train_state.pt")
LOSS_CSV = os.path.join(PKG, "loss.csv")


def cosine_alphas_cumprod(n=1000, max_beta=0.999):
    """diffusers' squaredcos_cap_v2: betas from alpha_bar(t)=cos((t+0.008)/1.008*pi/2)^2."""
    def ab(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - ab((i + 1) / n) / ab(i / n), max_beta) for i in range(n)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0).float()


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head (Vaswani et al. 2017, eq. 1) as plain
    matmuls; q [B,Lq,C], k/v [B,Lk,C] -> [B,Lq,C], C = heads*d. The same function
    as model.attention, which the package exports; used for CPU training only,
    where PyTorch's CPU flash-attention backward is slower at these lengths
    (Lq <= 256): 1.58 -> 1.38 s per batch-64 bf16 step on 2 cores."""
    b, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads
    q = q.reshape(b, lq, heads, d).transpose(1, 2) * (1.0 / math.sqrt(d))
    k = k.reshape(b, lk, heads, d).transpose(1, 2)
    v = v.reshape(b, lk, heads, d).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
    return (w @ v).transpose(1, 2).reshape(b, lq, c)


def load_data(tok):
    d = np.load(os.path.join(ROOT, "data", "emoji_%d.npz" % CONFIG["res"]))
    caps = [str(c) for c in d["captions"]]
    with open(os.path.join(HERE, "eval_captions.json"), encoding="utf-8") as f:
        held = set(json.load(f)["heldout"])
    keep = [i for i, c in enumerate(caps) if c not in held]
    assert len(caps) - len(keep) == len(held)
    imgs = torch.from_numpy(d["images"][keep]).permute(0, 3, 1, 2).float() / 127.5 - 1
    caps = [caps[i] for i in keep]
    ids = torch.tensor([tok.encode_padded(c, CONFIG["context_length"]) for c in caps])
    weights = torch.tensor([0.25 if "skin tone" in c else 1.0 for c in caps])
    return imgs, ids, weights, caps


def main():
    ap = argparse.ArgumentParser(description="train the emoji model")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--ema-max", type=float, default=0.999)
    ap.add_argument("--gamma", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2,
                    help="most intra-op threads; 1 is used while other processes load the CPU")
    ap.add_argument("--max-steps", type=int, default=10 ** 9)
    ap.add_argument("--stop-at", default="", help="UTC HH:MM after which to save and stop")
    ap.add_argument("--decay-min", type=float, default=0.0,
                    help="with --stop-at: minutes before it over which the learning rate "
                         "falls linearly to a tenth")
    ap.add_argument("--save-min", type=float, default=10.0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast for the forward pass (weights, optimiser and loss stay fp32); "
                         "1.6x faster per step on an AVX512-BF16 CPU")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (random numbers stay on the CPU)")
    args = ap.parse_args()
    if args.decay_min > 0 and not args.stop_at:
        ap.error("--decay-min needs --stop-at")
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        model_lib.attention = math_attention  # training only; export keeps model.attention
    stop_ts = None
    if args.stop_at:
        hh, mm = (int(v) for v in args.stop_at.split(":"))
        now = time.time()
        stop_ts = now - now % 86400 + hh * 3600 + mm * 60  # today, UTC

    tok = bpe.Tokenizer(os.path.join(PKG, "tokenizer"))
    imgs, ids, weights, caps = load_data(tok)
    empty = torch.tensor(tok.encode_padded("", CONFIG["context_length"]))
    torch.manual_seed(args.seed)
    model = EmojiModel(len(tok.vocab), CONFIG["context_length"], CONFIG["d_text"],
                       CONFIG["text_layers"], CONFIG["channels"], CONFIG["attn"])
    ema = EmojiModel(len(tok.vocab), CONFIG["context_length"], CONFIG["d_text"],
                     CONFIG["text_layers"], CONFIG["channels"], CONFIG["attn"])
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    dev = torch.device(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    step, ema_n, train_s = 0, 0, 0.0
    warm_from, opt_state = 0, None
    found = checkpoint.newest(STATE, CKPT, PKG)
    if found is not None:
        source, raw_sd, ema_sd, meta = found
        model.load_state_dict(raw_sd)
        ema.load_state_dict(ema_sd)
        step, ema_n, train_s = meta["step"], meta["ema_n"], meta["train_s"]
        if source == "local":
            warm_from, opt_state = meta.get("warm_from", 0), meta.get("opt")
        else:
            warm_from = step  # fresh optimiser: warm up again
        print("resumed from %s at step %d" % (
            "local state" if source == "local" else "committed checkpoint", step), flush=True)
    model.to(dev)
    ema.to(dev)
    if opt_state is not None:
        opt.load_state_dict(opt_state)  # after .to(dev): moments follow the parameters
    print("params: text %d unet %d; train images %d" % (
        count(model.text_encoder), count(model.unet), len(caps)), flush=True)

    ab = cosine_alphas_cumprod(CONFIG["num_train_timesteps"])
    gen = torch.Generator().manual_seed(args.seed * 1000003 + step)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))

    def save(final=False):
        tmp = STATE + ".tmp"
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "step": step, "ema_n": ema_n, "train_s": train_s, "warm_from": warm_from,
                    "config": CONFIG, "batch": args.batch, "lr": args.lr}, tmp)
        os.replace(tmp, STATE)
        print("saved step %d to %s%s (export.py writes the committed form)"
              % (step, STATE, " (final)" if final else ""), flush=True)

    def log_line(line):
        # open per line: a file replaced under the run (git checkout) still gets the line
        new = not os.path.exists(LOSS_CSV)
        with open(LOSS_CSV, "a") as f:
            f.write(("step,loss,lr,train_seconds,utc\n" if new else "") + line)

    last_save = time.time()
    acc, acc_n = 0.0, 0
    while step < args.max_steps and not stop["now"]:
        if args.stop_at and time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
            break
        if step % 20 == 0 and dev.type == "cpu":
            # On a shared, oversubscribed CPU a 2-thread OpenMP step waits at
            # every barrier for a descheduled thread; one thread is faster then.
            others = os.getloadavg()[0] - torch.get_num_threads()
            torch.set_num_threads(args.threads if others < 0.7 else 1)
        t0 = time.time()
        idx = torch.multinomial(weights, args.batch, replacement=True, generator=gen)
        x0 = imgs[idx]
        c = ids[idx].clone()
        drop = torch.rand(args.batch, generator=gen) < 0.1
        c[drop] = empty
        t = torch.randint(0, CONFIG["num_train_timesteps"], (args.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = ab[t].sqrt()[:, None, None, None]
        s = (1 - ab[t]).sqrt()[:, None, None, None]
        xt = a * x0 + s * eps
        v = a * eps - s * x0
        snr = ab[t] / (1 - ab[t])
        w = torch.clamp(snr, max=args.gamma) / (snr + 1)
        lr = args.lr * min(1.0, (step - warm_from + 1) / args.warmup)
        if args.decay_min > 0:
            left = (stop_ts - time.time()) / (60 * args.decay_min)
            lr *= 0.1 + 0.9 * min(1.0, max(0.0, left))
        for g in opt.param_groups:
            g["lr"] = lr
        xt, v, w, c = xt.to(dev), v.to(dev), w.to(dev), c.to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            pred = model(xt, t.float().to(dev), c)
        per = ((pred.float() - v) ** 2).mean(dim=(1, 2, 3))
        loss = (w * per).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_n += 1
        decay = min(args.ema_max, (1 + ema_n) / (10 + ema_n))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        step += 1
        train_s += time.time() - t0
        acc += per.mean().item()
        acc_n += 1
        if step % args.log_every == 0:
            log_line("%d,%.5f,%.3g,%.0f,%s\n" % (step, acc / acc_n, lr, train_s,
                                                 time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())))
            print("step %d loss %.4f lr %.2g %.2fs/step threads %d load %.1f" % (
                step, acc / acc_n, lr, time.time() - t0, torch.get_num_threads(),
                os.getloadavg()[0]), flush=True)
            acc, acc_n = 0.0, 0
        if time.time() - last_save > args.save_min * 60:
            save()
            last_save = time.time()
    save(final=True)


if __name__ == "__main__":
    main()
