#!/usr/bin/env python3
"""tools/export/export.py end to end, offline (HF_HUB_OFFLINE=1), at reduced width (model_channels 32).

- --random-init sd15 as a subprocess: a complete package under 50 MB whose fp16 UNet equals
  diffusers' model from the same seed with fp16-rounded weights; re-export replaces it in place.
- --checkpoint (original LDM layout, written as the inverse of diffusers' converters) for SD 1.5,
  SD 2.x (--arch sd21-v: v_prediction) and SDXL: the package's UNet matches diffusers' on the
  source weights within 1e-4 relative, and its text encoders and VAE decoder equal the modules
  converted straight from the source models (the LDM round trip loses nothing).
- --diffusers with an LCM UNet of 2 levels and layers_per_block 1: the folder's configs decide the
  architecture; manifest time_cond_proj_dim, guidance.mode "embedded", sampler "lcm", the folder's
  scheduler config.
- --lora FILE:0.7 (PEFT format, one layer) merges W + 0.7 B A before conversion.
- Bad input: one line on stderr, exit 1 (2 for bad flags), no traceback, no package and no
  temporary folder left: not safetensors, truncated, missing / unexpected keys, wrong shapes, an
  SD 2.x checkpoint without --arch, a LoRA passed as checkpoint, --arch that does not fit, an --out
  that is not a package, a failure halfway through writing.

Run: .venv/bin/python tests/export/test_export_cli.py (exit 0 pass, 1 fail, 77 skip without diffusers).
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_test_util as T  # noqa: E402  (puts tools/export on sys.path)

T.need("diffusers", "transformers", "safetensors", "text_encoder", "vae", "tokenizer_files", "lora")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import export  # noqa: E402
import sources  # noqa: E402
import unet as U  # noqa: E402

EXPORT = os.path.join(T.EXPORT_DIR, "export.py")
N = 32
WORK = tempfile.mkdtemp(prefix="fewstep-export-test-")
TOKENIZER = [T.SHARED_BPE] if os.path.isfile(T.SHARED_BPE) else []  # else open-clip-torch's copy
_models = {}


def model(arch: str):
    """The reduced random model of arch (sources.from_random, seed 0), built once."""
    if arch not in _models:
        _models[arch] = sources.from_random(arch, N)
    return _models[arch]


def tok_flags():
    return ["--tokenizer", TOKENIZER[0]] if TOKENIZER else []


def run_main(argv):
    """export.main(argv) in this process; (exit code, stderr text)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = export.main(argv)
        except SystemExit as e:  # argparse
            code = e.code
    return code, err.getvalue()


def manifest(pkg):
    with open(os.path.join(pkg, "model.json")) as f:
        return json.load(f)


def unet_error(pkg, ref):
    """Relative error of pkg/unet.pt (as fp32) against the diffusers UNet ref on one random input."""
    m = torch.jit.load(os.path.join(pkg, "unet.pt")).float()
    args, kwargs = U.example_inputs(ref.config, 2, 16, 24, torch.Generator().manual_seed(11), ctx_len=77)
    with torch.no_grad():
        return T.rel_err(U.run_blockwise(m, *args), ref(*args[:3], **kwargs).sample)


def leftovers(parent):
    return [n for n in os.listdir(parent) if n.startswith(".")]


def test_random_init_subprocess():
    out = os.path.join(WORK, "rand", "sd15")
    os.makedirs(os.path.dirname(out))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, EXPORT, "--random-init", "sd15", "--model-channels", str(N), "--out", out]
                       + tok_flags(), capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    print("  " + r.stdout.strip().splitlines()[-1])
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    assert size <= 50e6, size
    m = manifest(out)
    assert m["kind"] == "latent" and m["sample_size"] == [64, 64] and m["vae_scale_factor"] == 8
    sch = m["scheduler"]
    assert (sch["beta_schedule"], sch["beta_start"], sch["beta_end"]) == ("scaled_linear", 0.00085, 0.012)
    assert sch["steps_offset"] == 1 and sch["set_alpha_to_one"] is False and sch["clip_sample"] is False
    assert sch["prediction_type"] == "epsilon" and not any(k.startswith("_") for k in sch)
    assert m["unet"]["form"] == "blocks" and m["unet"]["downsample_factor"] == 8
    assert m["tokenizer"]["pad_id"] == 49407 and m["guidance"]["mode"] == "cfg"
    assert m["text_encoder"] == {"file": "text_encoder.pt", "context_length": 77, "hidden_size": 2 * N}
    for key in ("unet", "text_encoder", "vae_decoder"):
        assert os.path.isfile(os.path.join(out, m[key]["file"]))
    ref = sources.from_random("sd15", N).unet.half().float()  # the same seed, weights as stored
    err = unet_error(out, ref)
    assert err <= 1e-4, err
    # a second export replaces the package atomically and leaves nothing beside it
    code, err_text = run_main(["--random-init", "sd15", "--model-channels", str(N), "--out", out, "--dtype", "fp32"]
                              + tok_flags())
    assert code == 0, err_text
    stored = dict(torch.jit.load(os.path.join(out, "unet.pt")).named_parameters())["out.2.weight"]
    assert stored.dtype == torch.float32
    assert leftovers(os.path.dirname(out)) == []


def test_random_init_torch_only():
    """Without diffusers and transformers, --random-init builds fewstep's own modules (SD-Turbo here)."""
    out = os.path.join(WORK, "torch-only", "turbo")
    os.makedirs(os.path.dirname(out))
    argv = ["--random-init", "sd-turbo", "--model-channels", str(N), "--out", out] + tok_flags()
    code = ("import sys, runpy; sys.modules['diffusers'] = None; sys.modules['transformers'] = None; "
            "sys.argv = %r; runpy.run_path(%r, run_name='__main__')" % ([EXPORT] + argv, EXPORT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = manifest(out)
    assert m["export"]["torch_only"] is True and m["scheduler"]["timestep_spacing"] == "trailing"
    assert m["guidance"]["mode"] == "none" and m["defaults"]["steps"] <= 4 and m["tokenizer"]["pad_id"] == 0
    unet = torch.jit.load(os.path.join(out, "unet.pt")).float()
    x = torch.randn(2, 4, 16, 24)
    with torch.no_grad():
        y = U.run_blockwise(unet, x, torch.tensor([999.0, 499.0]), torch.randn(2, 77, m["unet"]["cross_attention_dim"]))
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().max() > 0
    te = torch.jit.load(os.path.join(out, "text_encoder.pt"))(torch.zeros(1, 77, dtype=torch.long))
    assert te.shape == (1, 77, 2 * N)


def _roundtrip(arch, family_arch, extra_flags=()):
    src = model(family_arch)
    path = os.path.join(WORK, arch + ".safetensors")
    T.write_ldm_checkpoint(src, path)
    out = os.path.join(WORK, "pkg-" + arch)
    code, err = run_main(["--checkpoint", path, "--out", out, "--dtype", "fp32", *extra_flags] + tok_flags())
    assert code == 0, err
    err = unet_error(out, src.unet)
    print("  %s: UNet relative error %.2e" % (arch, err))
    assert err <= 1e-4, err
    te_mod = export.helper("text_encoder")
    ids = torch.randint(0, 49406, (2, 77))
    for i, role in enumerate(src.roles):
        got = torch.jit.load(os.path.join(out, "text_encoder%s.pt" % ("" if i == 0 else "_2")))(ids)
        want = te_mod.from_transformers(src.text_encoders[i], role)(ids)
        for a, b in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]):
            assert T.rel_err(a, b) <= 1e-6, role
    z = torch.randn(1, 4, 8, 8)
    got = torch.jit.load(os.path.join(out, "vae_decoder.pt"))(z)
    assert T.rel_err(got, export.helper("vae").from_diffusers(src.vae)(z)) <= 1e-6
    return manifest(out)


def test_checkpoint_sd15():
    m = _roundtrip("sd15", "sd15")
    assert m["export"]["arch"] == "sd15" and m["defaults"]["sampler"] == "ddim"


def test_checkpoint_sd2_v():
    m = _roundtrip("sd21-v", "sd21", ["--arch", "sd21-v"])
    assert m["scheduler"]["prediction_type"] == "v_prediction" and m["sample_size"] == [96, 96]
    assert m["tokenizer"]["pad_id"] == 0  # OpenCLIP pads with "!"


def test_checkpoint_sdxl():
    m = _roundtrip("sdxl", "sdxl")
    assert m["unet"]["addition_embed_type"] == "text_time" and m["unet"]["addition_time_embed_dim"] == 256
    assert m["unet"]["pooled_size"] == 2 * N and m["text_encoder_2"]["pooled_size"] == 2 * N
    assert m["tokenizer"]["pad_id"] == 49407 and m["tokenizer_2"]["pad_id"] == 0
    assert m["guidance"]["force_zeros_for_empty_prompt"] is True and m["vae_decoder"]["scaling_factor"] == 0.13025


def test_diffusers_folder_lcm():
    from diffusers import LCMScheduler, UNet2DConditionModel
    base = model("sd15")
    cfg = {k: v for k, v in base.unet.config.items() if not k.startswith("_")}  # _use_default_values
    cfg.update(block_out_channels=[N, 2 * N], layers_per_block=1, time_cond_proj_dim=256,
               down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    torch.manual_seed(3)
    unet = UNet2DConditionModel.from_config(cfg).eval()
    folder = os.path.join(WORK, "lcm-folder")
    sched = dict(LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").config,
                 _class_name="LCMScheduler")
    # Settings fewstep does not implement are left out (the runtime would warn about each), a
    # non-finite one included: model.json must stay strict JSON.
    sched.update(skip_prk_steps=False, lambda_min_clipped=float("-inf"), interpolation_type="linear")
    T.write_diffusers_folder(folder, unet, base.vae, base.text_encoders[0], sched)
    out = os.path.join(WORK, "pkg-lcm")
    code, err = run_main(["--diffusers", folder, "--out", out, "--dtype", "fp32"] + tok_flags())
    assert code == 0, err
    m = manifest(out)
    assert m["unet"]["time_cond_proj_dim"] == 256 and m["unet"]["downsample_factor"] == 2
    assert m["guidance"]["mode"] == "embedded" and m["defaults"]["sampler"] == "lcm" and m["defaults"]["steps"] == 4
    assert m["scheduler"]["original_inference_steps"] == 50 and m["scheduler"]["beta_start"] == 0.00085
    assert not {"skip_prk_steps", "lambda_min_clipped", "interpolation_type"} & set(m["scheduler"])
    assert m["export"]["scheduler_keys_left_out"] == {"skip_prk_steps": "False", "lambda_min_clipped": "-inf"}
    with open(os.path.join(out, "model.json"), encoding="utf-8") as f:
        json.load(f, parse_constant=lambda c: (_ for _ in ()).throw(ValueError("not JSON: " + c)))
    lm = torch.jit.load(os.path.join(out, "unet.pt"))
    x, t, ctx, w = torch.randn(2, 4, 8, 16), torch.tensor([759.0, 19.0]), torch.randn(2, 77, 2 * N), torch.randn(2, 256)
    with torch.no_grad():
        err = T.rel_err(U.run_blockwise(lm, x, t, ctx, w), unet(x, t, ctx, timestep_cond=w).sample)
    assert err <= 1e-4, err


def test_lora_flag():
    """--lora FILE:0.7 reaches the weights: a PEFT-format LoRA on one attention projection gives the
    package W + 0.7 * B @ A there (alpha = rank: scale 1, Hu et al. 2021, eq. 3)."""
    src = sources.from_random("sd15", N)
    layer = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    w = dict(src.unet.named_parameters())[layer + ".weight"]
    g = torch.Generator().manual_seed(9)
    a, b = torch.randn(4, w.shape[1], generator=g), torch.randn(w.shape[0], 4, generator=g)
    path = os.path.join(WORK, "lora.safetensors")
    save_file({"unet.%s.lora_A.weight" % layer: a, "unet.%s.lora_B.weight" % layer: b}, path)
    ckpt = os.path.join(WORK, "lora-base.safetensors")
    T.write_ldm_checkpoint(src, ckpt)
    out = os.path.join(WORK, "pkg-lora")
    code, err = run_main(["--checkpoint", ckpt, "--lora", path + ":0.7", "--out", out, "--dtype", "fp32"] + tok_flags())
    assert code == 0, err
    with torch.no_grad():
        w.add_(0.7 * b @ a)
    assert unet_error(out, src.unet) <= 1e-4
    assert manifest(out)["export"]["loras"][0]["scale"] == 0.7


def _bad(argv, needle, out=None, code_want=1):
    out = out or os.path.join(WORK, "bad", "pkg")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    code, err = run_main(argv + ["--out", out])
    lines = err.strip().splitlines()
    assert code == code_want, (argv, code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], "%r not in %r" % (needle, lines[0])
    assert not os.path.exists(out) and leftovers(os.path.dirname(out)) == [], os.listdir(os.path.dirname(out))
    print("  " + lines[0][:150])


def _variant(name, edit):
    path = os.path.join(WORK, name + ".safetensors")
    T.write_ldm_checkpoint(model("sd15"), path, edit=edit)
    return path


def test_bad_files():
    junk = os.path.join(WORK, "junk.safetensors")
    with open(junk, "wb") as f:
        f.write(b"PK\x03\x04 not a safetensors file at all" * 20)
    _bad(["--checkpoint", junk], "not a safetensors file")
    good = os.path.join(WORK, "good.safetensors")
    T.write_ldm_checkpoint(model("sd15"), good)
    with open(good, "rb") as f:
        data = f.read()
    cut = os.path.join(WORK, "cut.safetensors")
    with open(cut, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    _bad(["--checkpoint", cut], "truncated")
    _bad(["--checkpoint", os.path.join(WORK, "absent.safetensors")], "no such file")
    # the same failure seen from outside: one line, no traceback, exit 1
    r = subprocess.run([sys.executable, EXPORT, "--checkpoint", junk, "--out", os.path.join(WORK, "bad", "p2")],
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, EXPORT, "--random-init", "sd15", "--dtype", "fp8", "--out", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bad_keys_and_shapes():
    unet_keys = [U.LDM_UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn1.to_%s.weight" % c for c in "qkv"]

    def drop(sd):
        for k in unet_keys + ["first_stage_model.decoder.conv_in.bias", "first_stage_model.decoder.conv_out.weight"]:
            del sd[k]
    _bad(["--checkpoint", _variant("missing", drop)], "missing 5 key(s)")

    def add(sd):
        sd[U.LDM_UNET_PREFIX + "input_blocks.1.0.extra.weight"] = torch.zeros(3)
        sd["cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc3.weight"] = torch.zeros(3)
    _bad(["--checkpoint", _variant("unexpected", add)], "2 unexpected key(s)")

    def reshape(sd):
        k = U.LDM_UNET_PREFIX + "input_blocks.1.0.in_layers.2.weight"
        sd[k] = torch.zeros(sd[k].shape[0], sd[k].shape[1] + 1, 3, 3)
    _bad(["--checkpoint", _variant("shape", reshape)], "do not fit the architecture")

    def lora_only(sd):
        sd.clear()
        sd["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"] = torch.zeros(4, 32)
    _bad(["--checkpoint", _variant("lora", lora_only)], "pass it with --lora")


def test_bad_arch_and_flags():
    sd2 = os.path.join(WORK, "sd2.safetensors")
    T.write_ldm_checkpoint(model("sd21"), sd2)
    _bad(["--checkpoint", sd2], "pass --arch sd21, sd21-v or sd-turbo")
    good = os.path.join(WORK, "good.safetensors")
    if not os.path.isfile(good):
        T.write_ldm_checkpoint(model("sd15"), good)
    _bad(["--checkpoint", good, "--arch", "sdxl"], "does not fit")
    _bad(["--checkpoint", good, "--model-channels", "32"], "--model-channels only applies")
    _bad(["--checkpoint", good, "--lora", os.path.join(WORK, "none.safetensors")], "no such file")
    _bad(["--random-init", "sd15", "--model-channels", "12"], "multiple of 8")
    keep = os.path.join(WORK, "bad", "notapkg")
    os.makedirs(keep)
    with open(os.path.join(keep, "mine.txt"), "w") as f:
        f.write("user data")
    code, err = run_main(["--random-init", "sd15", "--model-channels", str(N), "--out", keep])
    assert code == 1 and "not a fewstep package" in err and os.listdir(keep) == ["mine.txt"], err


def test_failure_while_writing():
    """An error after the temporary package folder exists removes it; no --out appears."""
    real = export.helper

    def failing(name):
        if name == "vae":
            raise export.ExportError("simulated failure in the VAE step")
        return real(name)
    export.helper = failing
    try:
        _bad(["--random-init", "sd15", "--model-channels", str(N)] + tok_flags(), "simulated failure")
    finally:
        export.helper = real


TESTS = [test_random_init_subprocess, test_random_init_torch_only, test_checkpoint_sd15, test_checkpoint_sd2_v, test_checkpoint_sdxl,
         test_diffusers_folder_lcm, test_lora_flag, test_bad_files, test_bad_keys_and_shapes, test_bad_arch_and_flags,
         test_failure_while_writing]

if __name__ == "__main__":
    import shutil
    try:
        code = T.run(TESTS)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(code)
