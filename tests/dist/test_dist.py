#!/usr/bin/env python3
"""fewstep across processes: Gloo on loopback, 2 and 3 ranks, CPU.

Each case compares a distributed run with the single-process run it must
equal, or checks that a failure ends every rank with one line in bounded
time. Ranks are started by torchrun (`python -m torch.distributed.run
--no-python`, the venv's torchrun) or by tools/dist_launch.py where a rank
must be killed or never started. Every process gets a hard time limit.

    test_dist.py --fewstep build/fewstep --models build/test_models CASE
"""
import argparse
import csv
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import dist_launch  # noqa: E402

LIMIT = 240  # seconds: every launched process is killed by then
ENV = {"OMP_NUM_THREADS": "1"}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def clean_env():
    """This environment without launcher variables, one OpenMP thread."""
    env = dict(os.environ, **ENV)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def run_single(args):
    """One process, no launcher variables."""
    p = subprocess.run(args, env=clean_env(), capture_output=True, text=True, timeout=LIMIT)
    if p.returncode != 0:
        fail(f"single process failed ({p.returncode}): {' '.join(args)}\n{p.stdout}\n{p.stderr}")
    return p


def launch(args, nproc, **kw):
    kw.setdefault("timeout", LIMIT)
    status, codes, texts = dist_launch.launch(args, nproc, env_extra=ENV, **kw)
    return status, codes, texts


def launch_ok(args, nproc, **kw):
    status, codes, texts = launch(args, nproc, **kw)
    if status != 0:
        fail(f"{nproc} ranks failed: {codes}\n" + "\n".join(f"[rank {r}] {o}{e}" for r, (o, e) in texts.items()))
    return texts


def torchrun(args, nproc, extra=(), timeout=LIMIT):
    """torchrun --no-python on loopback (static rendezvous at 127.0.0.1)."""
    port = dist_launch.free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(port), *extra, "--no-python", *args]
    p = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        fail(f"torchrun failed ({p.returncode})\n{p.stdout}\n{p.stderr}")
    return p


def read_csv(path, drop=("wall_ms", "rank")):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, h in enumerate(rows[0]) if h not in drop]
    return [[r[i] for i in keep] for r in rows], rows


def summary_without_wall(path):
    """summary.md with its wall-time figures (Pareto table's last column, "N ms") removed."""
    text = open(path).read()
    text = re.sub(r"\| [0-9.]+ \|\n", "|\n", text)
    return re.sub(r", [0-9.]+ ms\.", ".", text)


def same_sweep(single, multi, world):
    """Every file of the distributed sweep equals the single process's, but wall_ms, rank, wall figures."""
    a, _ = read_csv(os.path.join(single, "results.csv"))
    b, raw = read_csv(os.path.join(multi, "results.csv"))
    check(a == b, "results.csv differs beyond wall_ms and rank")
    ranks = {r[raw[0].index("rank")] for r in raw[1:]}
    check(ranks == {str(r) for r in range(world)}, f"rank column holds {sorted(ranks)}, not every rank of {world}")
    check(summary_without_wall(os.path.join(single, "summary.md")) ==
          summary_without_wall(os.path.join(multi, "summary.md")), "summary.md differs beyond wall figures")
    pngs = sorted(f for f in os.listdir(single) if f.endswith(".png"))
    check(pngs and pngs == sorted(f for f in os.listdir(multi) if f.endswith(".png")), "different PNG files")
    for f in pngs:
        check(open(os.path.join(single, f), "rb").read() == open(os.path.join(multi, f), "rb").read(),
              f"{f} differs")


def one_line_errors(texts, ranks, pattern):
    for r in ranks:
        err = texts[r][1].strip().splitlines()
        check(len(err) == 1, f"rank {r}: expected one error line, got {len(err)}:\n" + "\n".join(err))
        check(re.search(pattern, err[0]) is not None, f"rank {r}: '{err[0]}' does not match /{pattern}/")


class Case:
    def __init__(self, a):
        self.bin = a.fewstep
        self.models = a.models
        self.tmp = tempfile.mkdtemp(prefix="fewstep-dist-")

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def sweep_args(self, out, *extra):
        return [self.bin, "sweep", "--model", "analytic:gmm:shape=3x8x8", "--samplers", "ddim,euler,heun,dpmpp_2m",
                "--steps", "2,4,8", "--seeds", "0,1", "--dtype", "fp64", "--threads", "1", "--dist-timeout", "60",
                "-q", "--out", out, *extra]

    def model_sweep_args(self, out, *extra):
        """A sweep of the tiny block-wise test model: units of tens to hundreds of milliseconds."""
        return [self.bin, "sweep", "--model", os.path.join(self.models, "tiny-blocks"), "-p", "a cat",
                "--samplers", "ddim,euler,dpmpp_2m", "--steps", "4,8,16", "--seeds", "0,1", "--reference", "unipc:40",
                "--threads", "1", "--dist-timeout", "60", "-q", "--out", out, *extra]

    def batch_args(self, prompt, steps, seed):
        """The arguments (no --out) of generate -b 4 on the tiny model, kept for same_batch's one-process run;
        makes the folders one/ (one process) and two/ (2 ranks)."""
        args = [self.bin, "generate", "--model", os.path.join(self.models, "tiny-blocks"), "-p", prompt, "--steps",
                str(steps), "-s", str(seed), "-b", "4", "--threads", "1", "-q", "--overwrite", "--dist-timeout", "60"]
        os.makedirs(self.path("one"))
        os.makedirs(self.path("two"))
        self.batch_single = args
        return args

    def same_batch(self, name, seed):
        """The 4 images in two/ (written by 2 ranks) equal one process's; returns the 2-rank stats."""
        run_single(self.batch_single + ["--out", self.path("one", name + ".png")])
        for k in range(4):
            f = f"{name}-{seed + k}.png"
            check(os.path.exists(self.path("two", f)), f"{f} missing (work assigned by LOCAL_RANK?)")
            check(open(self.path("one", f), "rb").read() == open(self.path("two", f), "rb").read(), f"{f} differs")
        st = json.load(open(self.path("two", "s.json")))
        check(st["world_size"] == 2 and st["rank_images"] == [2, 2], f"stats: {st}")
        return st

    # --- cases ---------------------------------------------------------------
    def sweep2(self):
        """2 ranks (own launcher) = 1 process; units cost-balanced, both ranks compute."""
        run_single(self.sweep_args(self.path("one")))
        launch_ok(self.sweep_args(self.path("two")), 2)
        same_sweep(self.path("one"), self.path("two"), 2)
        n = len(os.listdir(self.path("two", "units")))
        check(n == 2 * (4 * 3 + 1), f"{n} unit files, expected 26 (24 runs + 2 references)")

    def sweep3_torchrun(self):
        """3 ranks through torchrun --no-python (agent store) = 1 process."""
        run_single(self.sweep_args(self.path("one")))
        torchrun(self.sweep_args(self.path("three")), 3)
        same_sweep(self.path("one"), self.path("three"), 3)

    def batch4(self):
        """generate -b 4 on 2 ranks: image k on rank k mod 2, files equal, stats once by rank 0."""
        base = self.batch_args("a cat", 3, 5)
        launch_ok(base + ["--out", self.path("two", "img.png"), "--stats-json", self.path("two", "s.json")], 2)
        st = self.same_batch("img", 5)
        check(st["dist_split"] == "batch", f"stats: {st}")

    def batch_two_nodes(self):
        """Two torchrun launchers as two nodes (--nnodes 2, one process each): both have LOCAL_RANK 0, so only
        the global RANK can tell them apart; the 4 images must all be there and equal."""
        args = self.batch_args("a dog", 2, 9)
        port = dist_launch.free_port()
        env = clean_env()
        procs = []
        for node in (0, 1):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                   "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port), "--no-python",
                   *args, "--out", self.path("two", "x.png"), "--stats-json", self.path("two", "s.json")]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outs = []
        for p in procs:
            try:
                outs.append(p.communicate(timeout=LIMIT)[0])
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                fail("two-node torchrun timed out")
            check(p.returncode == 0, f"node launcher failed ({p.returncode}):\n{outs[-1]}")
        self.same_batch("x", 9)

    def cfg2(self):
        """--dist-split cfg on 2 ranks: latents within 1e-4 relative of one process (batch 1 against batch 2)."""
        model = os.path.join(self.models, "tiny-blocks")
        args = [self.bin, "generate", "--model", model, "-p", "red apple", "--steps", "4", "-s", "3",
                "--cfg-scale", "4", "--threads", "1", "-q", "--overwrite", "--dist-timeout", "60"]
        run_single(args + ["--out", self.path("one.png"), "--save-latents", self.path("one.npy"),
                           "--stats-json", self.path("one.json")])
        launch_ok(args + ["--dist-split", "cfg", "--out", self.path("two.png"), "--save-latents", self.path("two.npy"),
                          "--stats-json", self.path("two.json")], 2)
        a, b = np.load(self.path("one.npy")), np.load(self.path("two.npy"))
        rel = float(np.abs(a - b).max() / np.abs(a).max())
        print(f"cfg split: max |difference| / max |latent| = {rel:.3g}")
        check(rel <= 1e-4, f"CFG split latents differ by {rel:.3g} relative (> 1e-4)")
        one, two = json.load(open(self.path("one.json"))), json.load(open(self.path("two.json")))
        check(two["dist_split"] == "cfg" and two["rank_unet_calls"] == [one["unet_calls"]] * 2, f"stats: {two}")
        check(two["unet_rows"] == one["unet_rows"], f"rows: {two['unet_rows']} against {one['unet_rows']}")

    def picard(self, world, window):
        model = os.path.join(self.models, "tiny-blocks")
        args = [self.bin, "generate", "--model", model, "-p", "a cat", "--sampler", "ddim", "--steps", "8", "-s", "2",
                "--parallel", f"picard:window={window},tol=1e-3", "--threads", "1", "-q", "--overwrite",
                "--dist-timeout", "60"]
        run_single(args + ["--out", self.path("one.png"), "--save-latents", self.path("one.npy"),
                           "--stats-json", self.path("one.json")])
        launch_ok(args + ["--out", self.path("w.png"), "--save-latents", self.path("w.npy"),
                          "--stats-json", self.path("w.json")], world)
        a, b = np.load(self.path("one.npy")), np.load(self.path("w.npy"))
        rel = float(np.abs(a - b).max() / np.abs(a).max())
        print(f"picard on {world} ranks, window {window}: max relative difference {rel:.3g}")
        check(rel <= 1e-5, f"Picard latents differ by {rel:.3g} relative (> 1e-5, fp32 rounding)")
        one, w = json.load(open(self.path("one.json"))), json.load(open(self.path("w.json")))
        check(w["picard_rounds"] == one["picard_rounds"], f"rounds {w['picard_rounds']} against {one['picard_rounds']}")
        calls = w["rank_unet_calls"]
        check(len(calls) == world and calls[0] == one["unet_calls"], f"rank_unet_calls {calls}")
        if window < world:
            check(calls[-1] == 0, f"a rank past the window made UNet calls: {calls}")
        check("collective_ms" in w and w["dist_split"] == "picard", f"stats: {w}")

    def picard2(self):
        """Picard windows on 2 ranks: same rounds, latents equal within fp32 rounding."""
        self.picard(2, 4)

    def picard3_small_window(self):
        """A window of 2 on 3 ranks: the third rank has no share and still takes part."""
        self.picard(3, 2)

    def kill_and_resume(self):
        """A rank killed mid-sweep: the other stops within the timeout naming it, the finished units stay,
        and --resume computes the missing ones and writes the single process's files."""
        run_single(self.model_sweep_args(self.path("one")))
        out = self.path("two")
        t0 = time.monotonic()
        status, codes, texts = launch(self.model_sweep_args(out), 2, kill_rank=1,
                                      kill_when_file=self.path("two", "units", "*.unit"))
        took = time.monotonic() - t0
        check(codes[0] != 0, f"rank 0 exited {codes[0]} after rank 1 was killed")
        one_line_errors(texts, [0], r"^fewstep: error: rank 0: --dist: rank 1 stopped")
        check(took < 60 + 30, f"rank 0 took {took:.0f} s to stop")
        check(not os.path.exists(os.path.join(out, "results.csv")), "a partial results.csv was written")
        kept = len(os.listdir(os.path.join(out, "units")))
        check(1 <= kept < 2 * (3 * 3 + 1), f"{kept} unit files kept: expected some, not all")
        t1 = time.monotonic()
        launch_ok(self.model_sweep_args(out, "--resume"), 2)
        same_sweep(self.path("one"), out, 2)
        print(f"killed after {kept} of 20 units were kept; rank 0 stopped in {took:.1f} s; --resume ran the rest "
              f"in {time.monotonic() - t1:.1f} s")

    def interrupt_keeps_units(self):
        """SIGINT and SIGTERM in a sweep (one process): the finished units stay, nothing else does, the exit
        code is 128 + the signal, and --resume writes the uninterrupted sweep's files."""
        run_single(self.model_sweep_args(self.path("one")))
        for sig in (signal.SIGINT, signal.SIGTERM):
            out = self.path(f"sig{int(sig)}")
            p = subprocess.Popen(self.model_sweep_args(out), env=clean_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + LIMIT
            while not glob.glob(os.path.join(out, "units", "*.unit")) and p.poll() is None:
                if time.monotonic() > deadline:
                    p.kill()
                    fail("no unit finished in time")
                time.sleep(0.02)
            p.send_signal(sig)
            _, err = p.communicate(timeout=60)
            check(p.returncode == 128 + int(sig), f"exit code {p.returncode} after {sig.name}: {err}")
            names = os.listdir(out)
            check(names == ["units"], f"{sig.name}: {names} left in the output folder (only units/ may stay)")
            units = os.listdir(os.path.join(out, "units"))
            check(units and all(u.endswith(".unit") for u in units), f"{sig.name}: units/ holds {units}")
            run_single(self.model_sweep_args(out, "--resume"))
            same_sweep(self.path("one"), out, 1)
            print(f"{sig.name}: {len(units)} unit(s) kept, --resume completed")

    def profile2(self):
        """profile on 2 ranks with CFG on: rank 0 profiles its half of the CFG split and writes the trace."""
        out = self.path("prof")
        texts = launch_ok([self.bin, "profile", "--model", os.path.join(self.models, "tiny-blocks"), "-p", "a cat",
                           "--steps", "2", "--threads", "1", "--dist-timeout", "60", "--out", out], 2)
        check(os.path.isfile(os.path.join(out, "trace.json")), "no trace.json")
        check("CFG halves split across two ranks" in texts[0][0], f"rank 0 printed:\n{texts[0][0]}")
        check(texts[1][0] == "", f"rank 1 printed:\n{texts[1][0]}")

    def never_arrives(self):
        """WORLD_SIZE=2 with rank 0 alone: one line naming rank 1 after --dist-timeout; rank 1 alone: the
        master cannot be reached."""
        args = self.sweep_args(self.path("x"))
        args[args.index("--dist-timeout") + 1] = "3"
        t0 = time.monotonic()
        status, codes, texts = launch(args, 2, ranks=[0], timeout=60)
        check(status not in (0, 124) and codes[0] == 1, f"exit codes {codes}")
        one_line_errors(texts, [0], r"rank 1 of WORLD_SIZE=2 did not arrive within 3 s")
        check(time.monotonic() - t0 < 40, "took far longer than the timeout")
        status, codes, texts = launch(args, 2, ranks=[1], timeout=60)
        check(codes[1] == 1, f"exit codes {codes}")
        one_line_errors(texts, [1], r"cannot reach the rendezvous store at 127\.0\.0\.1:\d+")
        check(not os.path.exists(self.path("x", "results.csv")), "output written")

    def args_differ(self):
        """Ranks started with different arguments stop at start-up, each with one line."""
        a = self.sweep_args(self.path("y"))
        script = self.path("differ.sh")
        with open(script, "w") as f:  # rank 1 sweeps other steps
            f.write('#!/bin/sh\nif [ "$RANK" = 1 ]; then exec "$@" --steps 2,4; fi\nexec "$@"\n')
        os.chmod(script, 0o755)
        status, codes, texts = launch([script, *a], 2, timeout=90)
        check(codes == {0: 1, 1: 1}, f"exit codes {codes}")
        one_line_errors(texts, [0, 1], r"rank 1 was started with other arguments than rank 0")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fewstep", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("case")
    a = ap.parse_args()
    c = Case(a)
    fn = getattr(c, a.case, None)
    if fn is None:
        fail(f"unknown case {a.case}")
    t0 = time.monotonic()
    try:
        fn()
    finally:
        shutil.rmtree(c.tmp, ignore_errors=True)
    print(f"{a.case}: passed in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
