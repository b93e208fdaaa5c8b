#!/usr/bin/env python3
"""End to end, as a user runs it (issue 13, Deliver 6): tools/export/export.py writes a
reduced-width random package of ARCH (--random-init ARCH --model-channels 32, fp32), then
`fewstep generate` samples it on the CPU with the package's default sampler and guidance
(SD 1.5: DDIM, CFG 7.5; SDXL: Euler, CFG 5; SD-Turbo: Euler, no CFG), 2 steps at 128x128, to
a PNG.

Checked: both commands exit 0; the PNG is 128x128 RGB (its IHDR); the final latents are finite
and not all zero, and their shape is the 128/8 latent grid; stats-json counts 2 UNet rows per
step where the package guides by CFG and 1 where its guidance is "none" (Turbo); neither
command prints a warning. With --scheduler-keys, the exported package's scheduler object is
then replaced by tools/export/scheduler_keys.runtime_config of diffusers' default configs of
every scheduler class fewstep has a twin of, with skip_prk_steps false and lambda_min_clipped
-inf in them: `fewstep info` must print no warning (the exporter's key lists agree with the
runtime's) and model.json stays strict JSON.
Needs only torch (--random-init uses fewstep's own modules when diffusers is absent) and the
CLIP merges file: ../shared/data/clip or open-clip-torch's copy (skip, or a failure in CI, when
neither exists).
Usage: test_generate_e2e.py ARCH FEWSTEP_BIN [CLIP_MERGES_FILE] [--scheduler-keys]
Exit 0 pass, 1 fail, 77 skip.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "export"))
import export_test_util as T  # noqa: E402  (puts tools/export and tools/oracles on the path)

SIZE, STEPS, N = 128, 2, 32


def png_size(path):
    """(width, height, colour type) from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(26)
    T.check(head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path + ": not a PNG")
    w, h = struct.unpack(">II", head[16:24])
    return w, h, head[25]


def no_warning(what, stderr):
    lines = [ln for ln in stderr.splitlines() if "warning" in ln.lower()]
    T.check(not lines, "%s printed warnings:\n%s" % (what, "\n".join(lines)))


def run(argv, what):
    start = time.time()
    r = subprocess.run(argv, capture_output=True, text=True)
    T.check(r.returncode == 0, "%s failed (exit %d): %s" % (what, r.returncode, r.stderr.strip()))
    print("  %s: %.1f s" % (what, time.time() - start))
    return r


def check_scheduler_keys(pkg):
    import scheduler_keys
    configs = scheduler_source_configs()
    manifest_path = os.path.join(pkg, "model.json")
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    merged, dropped = {}, {}
    for cfg in configs:
        kept, left = scheduler_keys.runtime_config(cfg)
        merged.update(kept)
        dropped.update(left)
    for key in ("skip_prk_steps", "lambda_min_clipped"):
        T.check(key in dropped, "runtime_config kept %s" % key)
    # One merged object: the union of every kept key (values of the last config that has it).
    merged.update(prediction_type=manifest["scheduler"]["prediction_type"], timestep_spacing="leading",
                  steps_offset=1, set_alpha_to_one=False)
    merged.pop("use_exponential_sigmas", None)  # karras and exponential spacing exclude each other
    manifest["scheduler"] = merged
    text = json.dumps(manifest, indent=2, allow_nan=False)
    with open(manifest_path, "w", encoding="utf-8") as f:
        f.write(text)
    r = run([BIN, "info", "--model", pkg], "fewstep info (%d scheduler keys)" % len(merged))
    no_warning("fewstep info", r.stdout + r.stderr)


def scheduler_source_configs():
    """diffusers' default configs (when diffusers is installed) plus hand-written ones holding the
    keys that must be left out; the hand-written ones alone without diffusers."""
    configs = [{"_class_name": "PNDMScheduler", "skip_prk_steps": False, "set_alpha_to_one": False, "steps_offset": 1},
               {"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": float("-inf"),
                "solver_order": 2, "algorithm_type": "dpmsolver++", "lower_order_final": True,
                "euler_at_final": False, "solver_type": "midpoint", "variance_type": None, "flow_shift": 1.0},
               {"_class_name": "LCMScheduler", "original_inference_steps": 50, "timestep_scaling": 10.0,
                "interpolation_type": "linear", "timestep_type": "discrete"}]
    try:
        import diffusers
    except ImportError:
        return configs
    for name in ("DDIMScheduler", "PNDMScheduler", "DDPMScheduler", "EulerDiscreteScheduler",
                 "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LCMScheduler",
                 "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"):
        configs.append(dict(getattr(diffusers, name)().config))
    return configs


def main(arch, merges, scheduler_check):
    import numpy as np
    work = tempfile.mkdtemp(prefix="fewstep-e2e-%s-" % arch)
    try:
        pkg = os.path.join(work, arch)
        r = run([sys.executable, os.path.join(ROOT, "tools", "export", "export.py"), "--random-init", arch,
                 "--model-channels", str(N), "--dtype", "fp32", "--tokenizer", merges, "--out", pkg],
                "export.py --random-init %s" % arch)
        no_warning("export.py", r.stdout + r.stderr)
        with open(os.path.join(pkg, "model.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        png, lat, stats = (os.path.join(work, n) for n in ("image.png", "latents.npy", "stats.json"))
        r = run([BIN, "generate", "--model", pkg, "--prompt", "a red apple on a table", "--steps", str(STEPS), "--width", str(SIZE), "--height", str(SIZE), "--seed", "1", "--device",
                 "cpu", "--out", png, "--save-latents", lat, "--stats-json", stats],
                "fewstep generate (%s) %d steps %dx%d" % (manifest["defaults"]["sampler"], STEPS, SIZE, SIZE))
        no_warning("fewstep generate", r.stderr)
        T.check(png_size(png) == (SIZE, SIZE, 2), "the PNG is not %dx%d RGB: %s" % (SIZE, SIZE, png_size(png)))
        latents = np.load(lat)
        T.check(latents.shape == (1, 4, SIZE // 8, SIZE // 8), "latents shape %s" % (latents.shape,))
        T.check(np.isfinite(latents).all() and np.abs(latents).max() > 0, "latents not finite or all zero")
        with open(stats, encoding="utf-8") as f:
            rows = json.load(f)["unet_rows"]
        per_step = 1 if manifest["guidance"]["mode"] == "none" else 2
        T.check(rows == per_step * STEPS, "%d UNet rows, expected %d" % (rows, per_step * STEPS))
        if scheduler_check:
            check_scheduler_keys(pkg)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--scheduler-keys"]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    T.import_or_skip("torch")
    T.import_or_skip("numpy")
    BIN = args[1]
    MERGES = T.clip_merges_file(args[2] if len(args) > 2 else None)
    ARCH = args[0]

    def export_and_generate():
        main(ARCH, MERGES, "--scheduler-keys" in sys.argv)

    export_and_generate.__name__ = "export_and_generate_" + ARCH
    sys.exit(T.run([export_and_generate]))
