#!/usr/bin/env python3
"""Expected speed-ups of fewstep's three distributed splits, on paper.

    python bench/dist/paper_model.py [--rounds 4:R4,8:R8,25:R25,50:R50] [--t1 MS] [--t2 MS] ...

Prints Markdown tables for bench/RESULTS.md: a sweep, the CFG split and
Picard (window 16) for SD 1.5 at 512x512 (latents [4, 64, 64]) at 4, 8, 25
and 50 steps, on 2 and 8 GPUs of one node and on 4 nodes x 8 GPUs. Every
input is a flag whose default is the assumption written in its help; the
Picard round counts are measured (fewstep's own Picard, `picard_rounds`
of --stats-json) and passed with --rounds. The model, per split:

  UNet call time for b batch rows: t(b) = t1 + (b - 1) * (t2 - t1) (linear
  in the rows; t1 > t2 / 2 because one row does not fill a GPU).

  CFG split (one image, two ranks): every step runs one row per rank and
  exchanges the model outputs: step = t(1) + x_cfg, against t(2) on one
  GPU; decoding and text encoding are not split.

  Picard (ParaDiGMS, Shih et al. 2023, Algorithm 1): R rounds; a round
  evaluates the window's p points (2 rows each with CFG), ceil(p / W) per
  rank, then allgathers the drifts: round = t(2 ceil(p / W)) + x_gather,
  against N sequential steps of t(2). p is the mean window of the
  single-process run (unet_rows / (2 R)), so the shrinking window at the end
  is counted.

  Sweep: U independent units of mean NFE n each (N t(2) + decode), split by
  expected cost (longest first); rank 0 alone computes the metrics of
  every unit against its reference (SSIM, RMSE, PSNR) and writes the files.
  T_W = load + U (n t(2) + decode) / W + largest unit + U (metric + gather).
"""
import argparse
import math


def t_call(rows, a):
    return a.t1 + (rows - 1) * (a.t2 - a.t1)


def cfg_split(steps, world, nodes, a):
    if world < 2:
        return None
    one = steps * a.t2 + a.decode
    two = steps * (a.t1 + a.x_cfg) + a.decode  # pairs stay inside a node (ranks 2k, 2k+1)
    return one / two


def picard(steps, world, nodes, rounds, mean_window, a):
    one = steps * a.t2 + a.decode
    gather = a.x_gather_node if nodes == 1 else a.x_gather_nodes
    per_rank = math.ceil(mean_window / world)
    par = rounds * (t_call(2 * per_rank, a) + gather) + a.decode
    return one / par


def sweep(world, a, metrics_split=False):
    """Speed-up and hours (one GPU, W GPUs). metrics_split: what it would be if
    each rank computed its own units' metrics (not implemented: rank 0 does)."""
    units = a.units
    unit = a.nfe * a.t2 + a.decode
    metrics = units * a.metric
    one = a.load + units * unit + metrics
    many = a.load + units * unit / world + a.largest_nfe * a.t2 + units * a.gather_unit
    many += metrics / world if metrics_split else metrics
    return one / many, one / 3600, many / 3600


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t1", type=float, default=0.026, help="s, one UNet row (assumed: H100-class, fp16)")
    ap.add_argument("--t2", type=float, default=0.040, help="s, a CFG pair (2 rows) (assumed)")
    ap.add_argument("--decode", type=float, default=0.050, help="s, text encoding + VAE decode at 512² (assumed)")
    ap.add_argument("--x-cfg", type=float, default=0.0001,
                    help="s, one 64 KiB exchange over NVLink (assumed NCCL p2p latency)")
    ap.add_argument("--x-gather-node", type=float, default=0.0001,
                    help="s, allgather of 16 x 64 KiB in one node (assumed, NVLink)")
    ap.add_argument("--x-gather-nodes", type=float, default=0.0005,
                    help="s, the same allgather across 4 nodes (assumed, InfiniBand, ring latency)")
    ap.add_argument("--units", type=int, default=20480 + 256,
                    help="sweep units: 10 samplers x 8 steps x 64 prompts x 4 seeds + 256 references")
    ap.add_argument("--nfe", type=float, default=20.7,
                    help="mean NFE per unit: steps 1,2,4,8,16,25,32,50 (mean 17.25), 2 of 10 samplers second order")
    ap.add_argument("--largest-nfe", type=float, default=99, help="the costliest unit (heun, 50 steps)")
    ap.add_argument("--metric", type=float, default=0.3,
                    help="s, rank 0's SSIM + RMSE of one 512² unit (fewstep's ssim(): 1.2 ms at 32², x256 pixels; "
                         "1.0 s measured at 512² on the busy 2-core VM)")
    ap.add_argument("--gather-unit", type=float, default=0.001,
                    help="s, moving one unit (64 KiB latents + 768 KiB RGB) to rank 0 (~1 GB/s Gloo/TCP)")
    ap.add_argument("--load", type=float, default=10, help="s, start-up and model loading, every rank at once")
    ap.add_argument("--rounds", default="", help="measured Picard rounds and mean window: N:R:P,... e.g. 50:18:14.2")
    a = ap.parse_args()

    layouts = [("2 GPUs, 1 node", 2, 1), ("8 GPUs, 1 node", 8, 1), ("4 nodes × 8 GPUs", 32, 4)]
    print("Sweep (%d units, mean NFE %.1f):\n" % (a.units, a.nfe))
    print("| layout | one GPU h | W GPUs h | speed-up | efficiency | if each rank computed its own metrics |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, w, n in layouts:
        s, h1, hw = sweep(w, a)
        s2, _, hw2 = sweep(w, a, True)
        print(f"| {name} | {h1:.2f} | {hw:.2f} | {s:.2f}× | {s / w:.0%} | {s2:.2f}× ({hw2:.2f} h) |")
    print("\nCFG split (pairs of ranks; one image):\n")
    print("| steps | latency, 2 GPUs (and each pair of 8) | throughput against `--dist-split batch` on as many GPUs |")
    print("| ---: | ---: | ---: |")
    for steps in (4, 8, 25, 50):
        s = cfg_split(steps, 2, 1, a)
        print(f"| {steps} | {s:.2f}× | {s / 2:.2f}× |")
    if a.rounds:
        print("\nPicard, window 16 (rounds measured, see above):\n")
        print("| steps | rounds | mean window | " + " | ".join(n for n, _, _ in layouts) + " |")
        print("| ---: | ---: | ---: | " + " | ".join("---:" for _ in layouts) + " |")
        for item in a.rounds.split(","):
            steps, rounds, window = item.split(":")
            steps, rounds, window = int(steps), int(rounds), float(window)
            cells = [f"{picard(steps, w, n, rounds, window, a):.2f}×" for _, w, n in layouts]
            print(f"| {steps} | {rounds} | {window:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
