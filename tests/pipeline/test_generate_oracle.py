#!/usr/bin/env python3
"""`fewstep generate` on exported packages against diffusers' own pipelines (issue 13).

Reduced-width random models (tools/export/sources.py, model_channels 32, seed 0) are
exported with tools/export/export.py and sampled by the fewstep binary; diffusers runs
its pipeline on the same weights, tokenizer files and initial noise. The final latents
(`--save-latents`, diffusers' output_type="latent") must agree within 1e-3 relative:
  - SD 1.5 from a diffusers folder whose scheduler is SD 1.5's own config (PNDMScheduler,
    set_alpha_to_one false, steps_offset 1), DDIM 4 steps, CFG 7.5, 64x64, --init-noise;
  - SDXL, DDIM 2 steps, CFG 5, 96x64 (non-square), empty negative prompt: zeros
    (force_zeros_for_empty_prompt), pooled text embedding and time_ids;
  - SD-Turbo, Euler a 2 steps, guidance "none" (no --cfg-scale: CFG off), trailing,
    the step noise drawn from the seed's generator as diffusers draws it;
  - an LCM diffusers folder (time_cond_proj_dim 256), lcm 2 steps, w 8.5 through the
    guidance embedding, one UNet row per step;
  - SD 1.5 with a random LCM-LoRA (kohya format) merged at export, lcm 4 steps at CFG 1,
    against diffusers' LCMScheduler pipeline after load_lora_weights + fuse_lora.
Usage: test_generate_oracle.py FEWSTEP_BIN [CLIP_MERGES_FILE] [--only sd15|sdxl|turbo|lcm|lcm_lora]
(ctest runs one case per test, each an export and a pipeline: pipeline.generate_oracle_CASE.)
Exit 0 pass, 1 fail, 77 skip (diffusers/transformers absent; a failure under
FEWSTEP_REQUIRE_ORACLES=1).
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "export"))
import export_test_util as T  # noqa: E402  (puts tools/export and tools/oracles on the path)
from unet_test_util import write_diffusers_folder  # noqa: E402

N = 32  # model channels
PROMPT = "a red apple on a table"
TOL = 1e-3


def export_package(name, argv):
    """export.main(argv) in this process, into WORK/name; returns the package and its manifest."""
    import export
    out = os.path.join(WORK, name)
    with contextlib.redirect_stdout(io.StringIO()):
        code = export.main(argv + ["--out", out, "--dtype", "fp32", "--tokenizer", MERGES])
    T.check(code == 0, "export %s failed" % name)
    with open(os.path.join(out, "model.json"), encoding="utf-8") as f:
        return out, json.load(f)


def generate(pkg, *flags):
    """fewstep generate; returns (final latents [1, C, h, w] float32, stats)."""
    import numpy as np
    import torch
    lat, stats = os.path.join(WORK, "latents.npy"), os.path.join(WORK, "stats.json")
    r = subprocess.run([BIN, "generate", "--model", pkg, "--prompt", PROMPT, "--save-latents", lat,
                        "--stats-json", stats, "--out", os.path.join(WORK, "image.png"), "--overwrite", "--quiet"]
                       + list(flags), capture_output=True, text=True)
    T.check(r.returncode == 0, "fewstep generate failed: " + r.stderr)
    with open(stats, encoding="utf-8") as f:
        return torch.from_numpy(np.load(lat)), json.load(f)


def init_noise(shape, seed):
    """seeded_unit_noise's draw (the first of torch.Generator().manual_seed(seed)), saved for --init-noise."""
    import numpy as np
    import torch
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    path = os.path.join(WORK, "noise.npy")
    np.save(path, noise.numpy())
    return noise, path


def tokenizer(pkg, manifest, key):
    """transformers' CLIPTokenizer on the package's own files and pad token."""
    from transformers import CLIPTokenizer
    entry = manifest[key]
    vocab = os.path.join(pkg, entry["vocab"])
    with open(vocab, encoding="utf-8") as f:
        pad = {i: t for t, i in json.load(f).items()}[entry["pad_id"]]
    return CLIPTokenizer(vocab, os.path.join(pkg, entry["merges"]), pad_token=pad, model_max_length=77)


def sd_pipeline(model, pkg, manifest, scheduler):
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                   tokenizer=tokenizer(pkg, manifest, "tokenizer"), unet=model.unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def latents_of(pipe, **kwargs):
    import torch
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        return pipe(prompt=PROMPT, output_type="latent", **kwargs).images


def test_sd15_ddim_cfg():
    import sources
    from diffusers import DDIMScheduler
    model = sources.from_random("sd15", N)
    # SD 1.5's own scheduler config (PNDMScheduler, set_alpha_to_one false, steps_offset 1, skip_prk_steps).
    sd15_scheduler = dict(sources.arch_config("sd15")["scheduler"])
    folder = os.path.join(WORK, "sd15-folder")
    write_diffusers_folder(folder, model.unet, model.vae, model.text_encoders[0], sd15_scheduler)
    pkg, man = export_package("sd15", ["--diffusers", folder])
    T.check(man["scheduler"]["set_alpha_to_one"] is False and man["scheduler"]["steps_offset"] == 1,
            "SD 1.5's own scheduler config")
    noise, path = init_noise((1, 4, 8, 8), 11)
    ours, stats = generate(pkg, "--sampler", "ddim", "--steps", "4", "--cfg-scale", "7.5", "--width", "64",
                           "--height", "64", "--init-noise", path)
    T.check(stats["unet_rows"] == 8, "CFG: two rows per step")
    pipe = sd_pipeline(model, pkg, man, DDIMScheduler.from_config(sd15_scheduler))
    ref = latents_of(pipe, num_inference_steps=4, guidance_scale=7.5, height=64, width=64, latents=noise.clone())
    err = T.rel_err(ours, ref)
    print("  sd15 ddim: relative error %.2g" % err)
    T.check(err <= TOL, "SD 1.5 latents differ from diffusers' by %.3g" % err)


def test_sdxl_ddim_cfg_nonsquare():
    import sources
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline
    pkg, man = export_package("sdxl", ["--random-init", "sdxl", "--model-channels", str(N)])
    T.check(man["guidance"].get("force_zeros_for_empty_prompt") is True, "SDXL zeros an empty negative prompt")
    model = sources.from_random("sdxl", N)
    width, height = 96, 64
    noise, path = init_noise((1, 4, height // 8, width // 8), 12)
    ours, _ = generate(pkg, "--sampler", "ddim", "--steps", "2", "--cfg-scale", "5", "--width", str(width),
                       "--height", str(height), "--init-noise", path)
    pipe = StableDiffusionXLPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                     text_encoder_2=model.text_encoders[1],
                                     tokenizer=tokenizer(pkg, man, "tokenizer"),
                                     tokenizer_2=tokenizer(pkg, man, "tokenizer_2"), unet=model.unet,
                                     scheduler=DDIMScheduler.from_config(model.scheduler),
                                     force_zeros_for_empty_prompt=True)
    ref = latents_of(pipe, num_inference_steps=2, guidance_scale=5.0, height=height, width=width,
                     latents=noise.clone())
    err = T.rel_err(ours, ref)
    print("  sdxl ddim %dx%d: relative error %.2g" % (width, height, err))
    T.check(err <= TOL, "SDXL latents differ from diffusers' by %.3g" % err)


def test_turbo_euler_ancestral():
    import sources
    import torch
    from diffusers import EulerAncestralDiscreteScheduler
    pkg, man = export_package("sd-turbo", ["--random-init", "sd-turbo", "--model-channels", str(N)])
    T.check(man["guidance"]["mode"] == "none", "Turbo: guidance none")
    model = sources.from_random("sd-turbo", N)
    seed, steps = 13, 2
    ours, stats = generate(pkg, "--sampler", "euler_ancestral", "--steps", str(steps), "--width", "64", "--height",
                           "64", "--seed", str(seed))
    T.check(stats["unet_rows"] == steps, "no CFG by default")
    # diffusers draws the initial latents first, then one noise per step, from the same generator.
    # Its Euler family scales them by init_noise_sigma, which for trailing spacing is sigma_max
    # rather than the VP's sqrt(sigma_max^2 + 1) (fewstep's): hand it latents that undo this.
    scheduler = EulerAncestralDiscreteScheduler.from_config(model.scheduler)
    probe = EulerAncestralDiscreteScheduler.from_config(model.scheduler)
    probe.set_timesteps(steps)
    sigma_max = float(probe.sigmas[0])
    gen = torch.Generator().manual_seed(seed)
    first = torch.randn((1, 4, 8, 8), generator=gen)
    latents = first * ((sigma_max ** 2 + 1) ** 0.5 / float(probe.init_noise_sigma))
    ref = latents_of(sd_pipeline(model, pkg, man, scheduler), num_inference_steps=steps, guidance_scale=0.0,
                     height=64, width=64, latents=latents, generator=gen)
    err = T.rel_err(ours, ref)
    print("  sd-turbo euler_ancestral: relative error %.2g" % err)
    T.check(err <= TOL, "SD-Turbo latents differ from diffusers' by %.3g" % err)


def test_lcm_embedded_guidance():
    import sources
    import torch
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
    base = sources.from_random("sd15", N)
    cfg = {k: v for k, v in base.unet.config.items() if not k.startswith("_")}
    cfg.update(block_out_channels=[N, 2 * N], layers_per_block=1, time_cond_proj_dim=256,
               down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
               up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    torch.manual_seed(3)
    unet = UNet2DConditionModel.from_config(cfg).eval()
    with torch.no_grad():  # diffusers starts cond_proj at zero; random values make w matter
        unet.time_embedding.cond_proj.weight.normal_(0.0, 0.05)
    sched = dict(LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").config,
                 _class_name="LCMScheduler")
    folder = os.path.join(WORK, "lcm-folder")
    write_diffusers_folder(folder, unet, base.vae, base.text_encoders[0], sched)
    pkg, man = export_package("lcm", ["--diffusers", folder])
    T.check(man["guidance"]["mode"] == "embedded", "an LCM folder exports embedded guidance")
    pipe = LatentConsistencyModelPipeline(vae=base.vae, text_encoder=base.text_encoders[0],
                                          tokenizer=tokenizer(pkg, man, "tokenizer"), unet=unet,
                                          scheduler=LCMScheduler.from_config(sched), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    results = []
    for w in (8.5, 2.0):
        ours, stats = generate(pkg, "--sampler", "lcm", "--steps", "2", "--cfg-scale", str(w), "--width", "64",
                               "--height", "64", "--seed", "7")
        T.check(stats["unet_rows"] == 2 and stats["guidance"] == "embedded", "one UNet row per step")
        ref = latents_of(pipe, num_inference_steps=2, guidance_scale=w, height=64, width=64,
                         generator=torch.Generator().manual_seed(7))
        err = T.rel_err(ours, ref)
        print("  lcm w=%g: relative error %.2g" % (w, err))
        T.check(err <= TOL, "LCM latents at w=%g differ from diffusers' by %.3g" % (w, err))
        results.append(ours)
    T.check(T.rel_err(results[0], results[1]) > 1e-3, "w changes the result")


def lcm_lora_file(unet, path):
    """A random LCM-LoRA in kohya's format over `unet` (diffusers names): LCM-LoRA's target modules
    (attention projections, feed-forward, ResNet convs, time_emb_proj), rank 4, alpha 4."""
    import torch
    from safetensors.torch import save_file
    targets = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
               "conv2", "conv_shortcut", "time_emb_proj")
    g, sd = torch.Generator().manual_seed(5), {}
    for name, m in unet.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and any(name.endswith(t) for t in targets):
            w, stem = m.weight, "lora_unet_" + name.replace(".", "_")
            sd[stem + ".lora_down.weight"] = torch.randn(4, *w.shape[1:], generator=g) * 0.1
            sd[stem + ".lora_up.weight"] = torch.randn(w.shape[0], 4, *([1, 1] if w.dim() == 4 else []),
                                                       generator=g) * 0.1
            sd[stem + ".alpha"] = torch.tensor(4.0)
    save_file(sd, path)
    return path


def test_lcm_lora():
    import sources
    import torch
    from diffusers import LCMScheduler
    model = sources.from_random("sd15", N)
    sd15_scheduler = dict(sources.arch_config("sd15")["scheduler"])
    folder = os.path.join(WORK, "sd15-lcm-lora-folder")
    write_diffusers_folder(folder, model.unet, model.vae, model.text_encoders[0], sd15_scheduler)
    lora = lcm_lora_file(model.unet, os.path.join(WORK, "lcm-lora.safetensors"))
    pkg, man = export_package("sd15-lcm-lora", ["--diffusers", folder, "--lora", lora])
    ours, stats = generate(pkg, "--sampler", "lcm", "--steps", "4", "--cfg-scale", "1", "--width", "64", "--height",
                           "64", "--seed", "7")
    T.check(stats["unet_rows"] == 4, "CFG 1: one UNet row per step")
    pipe = sd_pipeline(model, pkg, man, LCMScheduler.from_config(sd15_scheduler))
    pipe.load_lora_weights(lora)
    pipe.fuse_lora(lora_scale=1.0)
    ref = latents_of(pipe, num_inference_steps=4, guidance_scale=1.0, height=64, width=64,
                     generator=torch.Generator().manual_seed(7))
    err = T.rel_err(ours, ref)
    print("  sd15 + LCM-LoRA, lcm 4 steps: relative error %.2g" % err)
    T.check(err <= TOL, "SD 1.5 + LCM-LoRA latents differ from diffusers' by %.3g" % err)


if __name__ == "__main__":
    argv = sys.argv[1:]
    only = None
    if "--only" in argv:
        i = argv.index("--only")
        only = argv[i + 1] if i + 1 < len(argv) else None
        del argv[i:i + 2]
    CASES = {"sd15": test_sd15_ddim_cfg, "sdxl": test_sdxl_ddim_cfg_nonsquare, "turbo": test_turbo_euler_ancestral,
             "lcm": test_lcm_embedded_guidance, "lcm_lora": test_lcm_lora}
    if not argv or (only is not None and only not in CASES):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    BIN = argv[0]
    T.need("diffusers", "transformers")
    MERGES = T.clip_merges_file(argv[1] if len(argv) > 1 else None)
    WORK = tempfile.mkdtemp(prefix="fewstep-generate-oracle-")
    try:
        code = T.run([CASES[only]] if only else list(CASES.values()))
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(code)
