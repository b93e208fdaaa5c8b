#!/usr/bin/env python3
"""Scale-out on this machine: 1 process x 2 threads against 2 processes x 1 thread.

    python bench/dist/bench_dist.py --fewstep build/fewstep [--repeat 3] [--out bench-dist/]

Runs, on the embedded model (models/emoji), each configuration `--repeat`
times and reports the median wall time (whole command: start-up, model
loading, work, gathering, writing):
  - a 48-unit sweep (5 samplers x 3 step counts x 3 seeds = 45 runs + 3
    references at unipc:50): `sweep --threads 2` against `torchrun
    --nproc-per-node 2 ... --threads 1`; the goal is >= 0.95x the single
    process's throughput;
  - Picard (`ddim`, 25 steps, window 8): 1 rank x 2 threads against 2
    ranks x 1 thread (`--dist-split picard`), with the rounds;
  - the CFG split (`euler`, 20 steps, CFG 2): 1 rank x 2 threads against
    2 ranks x 1 thread (`--dist-split cfg`);
and the per-exchange collective time from --stats-json. Prints a Markdown
table with the date, the load average before and after, and the versions.
Launches through the venv's torchrun (`python -m torch.distributed.run`),
loopback only.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import dist_launch  # noqa: E402


def env_for(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def run(cmd, threads, nproc):
    """Wall seconds of one command, on 1 process or through torchrun on `nproc`."""
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
               "127.0.0.1", "--master-port", str(dist_launch.free_port()), "--no-python", *cmd]
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env_for(threads), capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return wall


def median_of(fn, repeat):
    return statistics.median(fn() for _ in range(repeat))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fewstep", default=os.path.join(ROOT, "build", "fewstep"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "emoji"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="keep the outputs here (default: a temporary folder)")
    a = ap.parse_args()
    tmp = a.out or tempfile.mkdtemp(prefix="fewstep-bench-dist-")
    os.makedirs(tmp, exist_ok=True)
    load0 = os.getloadavg()
    rows = []

    def sweep(threads, nproc, tag):
        out = os.path.join(tmp, f"sweep-{tag}")
        shutil.rmtree(out, ignore_errors=True)  # no --resume: every unit runs
        return run([a.fewstep, "sweep", "--model", a.model, "-p", "red apple", "--samplers",
                    "ddim,euler,dpmpp_2m,unipc,heun", "--steps", "4,8,16", "--seeds", "0,1,2", "--reference",
                    "unipc:50", "--threads", str(threads), "-q", "--out", out], threads, nproc)

    s1 = median_of(lambda: sweep(2, 1, "1x2"), a.repeat)
    s2 = median_of(lambda: sweep(1, 2, "2x1"), a.repeat)
    units = len(os.listdir(os.path.join(tmp, "sweep-2x1", "units")))
    rows.append((f"sweep, {units} units", "1 × 2 threads", s1, ""))
    rows.append((f"sweep, {units} units", "2 × 1 thread", s2, f"throughput {s1 / s2:.2f}× the single process's"))

    def gen(threads, nproc, tag, extra):
        stats = os.path.join(tmp, f"{tag}.json")
        wall = run([a.fewstep, "generate", "--model", a.model, "-p", "red apple", "-s", "7", "--threads", str(threads),
                    "-q", "--overwrite", "--out", os.path.join(tmp, f"{tag}.png"), "--stats-json", stats, *extra],
                   threads, nproc)
        return wall, json.load(open(stats))

    for name, extra1, extra2 in (
            ("Picard ddim 25 steps, window 8", ["--sampler", "ddim", "--steps", "25", "--parallel",
                                               "picard:window=8,tol=1e-3"], ["--dist-split", "picard"]),
            ("CFG split, euler 20 steps, CFG 2", ["--sampler", "euler", "--steps", "20", "--cfg-scale", "2"],
             ["--dist-split", "cfg"])):
        one = [gen(2, 1, "one", extra1) for _ in range(a.repeat)]
        two = [gen(1, 2, "two", extra1 + extra2) for _ in range(a.repeat)]
        w1 = statistics.median(w for w, _ in one)
        w2 = statistics.median(w for w, _ in two)
        m1 = statistics.median(st["sampling_ms"] for _, st in one)
        st2 = two[-1][1]
        m2 = statistics.median(st["sampling_ms"] for _, st in two)
        calls = st2["rank_unet_calls"][0]
        extra = f"sampling {m1:.0f} ms"
        if "picard" in " ".join(extra1):
            extra += f", rounds {one[-1][1]['picard_rounds']}"
        rows.append((name, "1 × 2 threads", w1, extra))
        extra = (f"sampling {m2:.0f} ms ({m1 / m2:.2f}×), collective {st2['collective_ms']:.0f} ms over {calls} "
                 f"exchanges ({st2['collective_ms'] / max(calls, 1):.2f} ms each, waiting included)")
        if "picard" in " ".join(extra2):
            extra += f", rounds {st2['picard_rounds']}, rank_unet_calls {st2['rank_unet_calls']}"
        rows.append((name, "2 × 1 thread", w2, extra))

    load1 = os.getloadavg()
    torch_v = subprocess.run([sys.executable, "-c", "import torch;print(torch.__version__)"], capture_output=True,
                             text=True).stdout.strip()
    print(f"Date {datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores, LibTorch {torch_v}; "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after; median of {a.repeat}; wall = whole command.\n")
    print("| work | processes × threads | wall s | notes |")
    print("| --- | --- | ---: | --- |")
    for work, cfg, wall, note in rows:
        print(f"| {work} | {cfg} | {wall:.2f} | {note} |")
    if not a.out:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
