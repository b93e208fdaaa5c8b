#!/usr/bin/env python3
"""One UNet step of a package: fewstep against ONNX Runtime, in one run.

For each thread count, times one UNet call with the CFG batch of 2 rows:
  - fewstep (build/bench_unet_step): fp32 with --fusion all (the default) and
    --fusion none (the graph as exported), and bf16 with --fusion all;
  - ONNX Runtime 1.32 (bench/requirements.txt), CPU provider, all graph
    optimisations, intra-op threads = the thread count, on the graph that
    tools/export_onnx.py exports from the eager model (tools/emoji/model.py)
    with the package's weights.
Same weights, same input shapes and kinds (x ~ N(0, 1), timestep 500, the
text encoder's context for "a red apple"), same thread count. Prints a table
of median wall times and of median process CPU times (steadier when the
machine is busy), the ratios to ONNX Runtime and the bf16 speed-up, with
the load average before and after; writes JSON.

Usage (from the repository root, after `ninja -C build bench_unet_step` and
`.venv/bin/pip install -r bench/requirements.txt`):
  .venv/bin/python bench/ort/bench_ort.py [--model models/emoji] [--threads 1,2] [--repeats 30]
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "emoji"))


def fewstep_rows(args, threads, dtype, fusion):
    """bench_unet_step's JSON rows for one configuration."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "unet_step.json")
        cmd = [os.path.join(args.build, "bench", "unet_step", "bench_unet_step"), "--model", args.model, "--threads", str(threads),
               "--dtype", dtype, "--attention", "fused", "--fusion", fusion, "--warmup", str(args.warmup),
               "--repeats", str(args.repeats), "--json", out]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(out, encoding="utf-8") as f:
            return json.load(f)["rows"]


def context(model_dir, manifest):
    """The package text encoder's output for "a red apple", [1, L, D] float32."""
    te = manifest["text_encoder"]
    import bpe
    tok = bpe.Tokenizer(os.path.join(model_dir, os.path.dirname(manifest["tokenizer"]["vocab"])))
    ids = torch.tensor([tok.encode_padded("a red apple", te["context_length"])])
    encoder = torch.jit.load(os.path.join(model_dir, te["file"]), map_location="cpu").float().eval()
    with torch.no_grad():
        out = encoder(ids)
    return (out[0] if isinstance(out, tuple) else out).float().numpy()


def time_ort(args, threads, feeds):
    """Median wall and CPU milliseconds of one ONNX Runtime call."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
    for i in range(args.warmup):
        session.run(None, feeds[i % 2])
    wall, cpu = [], []
    for i in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        session.run(None, feeds[i % 2])
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return float(np.median(wall)), float(np.median(cpu))


def main():
    ap = argparse.ArgumentParser(description="fewstep's UNet step against ONNX Runtime's")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "emoji"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--onnx", default=None, help="default: BUILD/onnx/<package folder name>_unet.onnx")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 row")
    ap.add_argument("--json", default="bench_ort.json")
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)
    name = os.path.basename(os.path.normpath(args.model))
    args.onnx = args.onnx or os.path.join(args.build, "onnx", name + "_unet.onnx")
    with open(os.path.join(args.model, "model.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    unet_file = os.path.join(args.model, manifest["unet"]["file"])
    if not os.path.exists(args.onnx) or os.path.getmtime(args.onnx) < os.path.getmtime(unet_file):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_onnx.py"), "--model", args.model,
                        "--out", args.onnx], check=True)

    import onnxruntime as ort
    load_before = os.getloadavg()
    h, w = manifest["defaults"]["height"], manifest["defaults"]["width"]
    c = manifest["in_channels"]
    ctx = np.repeat(context(args.model, manifest), 2, axis=0)
    rng = np.random.default_rng(0)
    feeds = [{"sample": rng.standard_normal((2, c, h, w), dtype=np.float32),
              "timestep": np.full((2,), 500.0, np.float32), "encoder_hidden_states": ctx} for _ in range(2)]

    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        fp32 = {r["fusion"]: r for r in fewstep_rows(args, threads, "fp32", "all,none")}
        bf16 = None if args.no_bf16 else fewstep_rows(args, threads, "bf16", "all")[0]
        ort_wall, ort_cpu = time_ort(args, threads, feeds)
        results.append({"threads": threads, "fewstep_fp32_all": fp32["all"], "fewstep_fp32_none": fp32["none"],
                        "fewstep_bf16_all": bf16, "ort_ms": ort_wall, "ort_cpu_ms": ort_cpu})
    load_after = os.getloadavg()

    print("UNet step, batch 2 (a CFG pair), %s %dx%d; %s; onnxruntime %s, torch %s; load average %.2f before, "
          "%.2f after" % (manifest.get("name", name), w, h, datetime.date.today(), ort.__version__,
                          torch.__version__, load_before[0], load_after[0]))
    for key, label in (("median_ms", "wall"), ("cpu_ms", "process CPU")):
        ort_key = "ort_ms" if key == "median_ms" else "ort_cpu_ms"
        print("\nmedian %s time per call, ms" % label)
        print("| threads | fewstep fp32 (fusion all) | fewstep fp32 (fusion none) | ONNX Runtime fp32 | "
              "all / ORT | none / ORT | fewstep bf16 (fusion all) | fp32 / bf16 |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in results:
            a, n, o = r["fewstep_fp32_all"][key], r["fewstep_fp32_none"][key], r[ort_key]
            b = r["fewstep_bf16_all"][key] if r["fewstep_bf16_all"] else float("nan")
            print("| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (r["threads"], a, n, o, a / o, n / o, b,
                                                                             a / b))
    print("\nallocations per call (fp32): fusion all %.0f (%.1f MB), fusion none %.0f (%.1f MB)"
          % (results[0]["fewstep_fp32_all"]["allocs"], results[0]["fewstep_fp32_all"]["alloc_mb"],
             results[0]["fewstep_fp32_none"]["allocs"], results[0]["fewstep_fp32_none"]["alloc_mb"]))
    meta = {"date": str(datetime.date.today()), "model": args.model, "onnx": args.onnx, "machine": platform.node(),
            "cpu_count": os.cpu_count(), "load_before": load_before, "load_after": load_after,
            "onnxruntime": ort.__version__, "torch": torch.__version__, "repeats": args.repeats}
    tmp = args.json + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "rows": results}, f, indent=2)
    os.replace(tmp, args.json)
    print("wrote %s" % args.json)


if __name__ == "__main__":
    main()
