"""Helpers of the UNet/package exporter tests (test_unet_export.py, test_export_cli.py).

Exit codes follow ctest: 0 pass, 1 fail, 77 skip. A missing oracle (diffusers, transformers) is a
skip on a user's machine and a failure under FEWSTEP_REQUIRE_ORACLES=1 (CI). The test files also run
under pytest: there a missing oracle is pytest.skip / pytest.fail.

Fixtures: reduced-width random models (tools/export/sources.py), written as a single-file checkpoint
in the original LDM layout (inverse of diffusers' converters, tools/export/ldm_layout.py) or as a
diffusers folder (diffusers' and transformers' own save_pretrained).
"""
import importlib
import os
import sys
import time
import traceback

os.environ["HF_HUB_OFFLINE"] = "1"  # the exporter must work offline; so must its tests
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXPORT_DIR = os.path.join(ROOT, "tools", "export")
sys.path.insert(0, EXPORT_DIR)
SHARED_BPE = os.path.join(ROOT, "..", "shared", "data", "clip", "bpe_simple_vocab_16e6.txt.gz")
SKIP, FAIL = 77, 1


def _required() -> bool:
    return os.environ.get("FEWSTEP_REQUIRE_ORACLES", "") not in ("", "0")


def need(*modules: str) -> None:
    """Imports `modules` or stops: skip (77), or fail (1) under FEWSTEP_REQUIRE_ORACLES=1."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            msg = "%s is needed and missing (%s)" % (name, e)
            if "pytest" in sys.modules:
                import pytest
                if _required():
                    pytest.fail(msg, pytrace=False)
                pytest.skip(msg, allow_module_level=True)
            print(("FAIL: " if _required() else "SKIP: ") + msg)
            sys.exit(FAIL if _required() else SKIP)
    import warnings
    warnings.filterwarnings("ignore")
    import torch
    torch.set_num_threads(1)  # small tensors: one thread, and no spinning on a shared 2-core machine
    import diffusers
    import transformers
    for lib in (diffusers, transformers):
        lib.utils.logging.set_verbosity_error()
        lib.utils.logging.disable_progress_bar()


def run(tests) -> int:
    """Runs the test functions; prints PASS/FAIL per test; returns the exit code."""
    failed = 0
    for fn in tests:
        start, cpu = time.time(), time.process_time()
        try:
            fn()
            print("PASS %s (%.1f s, %.1f s CPU)" % (fn.__name__, time.time() - start, time.process_time() - cpu))
        except Exception:  # every failure is reported, then the exit code says 1
            failed += 1
            print("FAIL %s\n%s" % (fn.__name__, traceback.format_exc()))
    print("%d/%d passed" % (len(tests) - failed, len(tests)))
    return FAIL if failed else 0


def rel_err(got, ref) -> float:
    """||got - ref|| / ||ref|| in float64 (relative L2 error)."""
    ref = ref.double()
    return float((got.double() - ref).norm() / ref.norm().clamp_min(1e-300))


def ldm_state_dict(model, extras: bool = True):
    """A sources.Model as a single-file checkpoint's state dict in the original LDM layout. With
    extras: what real checkpoints also hold (DDPM buffers, CLIP position_ids, OpenCLIP-H's unused
    last layer and projection, logit_scale)."""
    import torch
    import ldm_layout as L
    import unet as U
    sd = {}
    mine = U.from_diffusers(model.unet)
    for k, v in mine.state_dict().items():
        sd[U.LDM_UNET_PREFIX + U.module_to_ldm_key(k)] = v
    sd.update(L.vae_to_ldm(model.vae.state_dict(), len(model.vae.config.block_out_channels)))
    g = torch.Generator().manual_seed(5)
    if model.family == "sd1":
        sd.update(L.clip_to_ldm(model.text_encoders[0].state_dict(), L.CLIP_SD1))
        if extras:
            sd[L.CLIP_SD1 + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
    elif model.family == "sd2":
        te = model.text_encoders[0]
        sd.update(L.openclip_to_ldm(te.state_dict(), L.OPENCLIP_SD2))
        if extras:  # the 24th layer and projection that SD 2.x does not use (random values)
            n, d = te.config.num_hidden_layers, te.config.hidden_size
            first = L.OPENCLIP_SD2 + "transformer.resblocks.0."
            for k, v in list(sd.items()):
                if k.startswith(first):
                    sd[k.replace(".resblocks.0.", ".resblocks.%d." % n)] = torch.randn(v.shape, generator=g)
            sd[L.OPENCLIP_SD2 + "text_projection"] = torch.randn(d, d, generator=g)
            sd[L.OPENCLIP_SD2 + "logit_scale"] = torch.tensor(4.6)
    else:
        sd.update(L.clip_to_ldm(model.text_encoders[0].state_dict(), L.CLIP_XL))
        sd.update(L.openclip_to_ldm(model.text_encoders[1].state_dict(), L.OPENCLIP_XL))
        if extras:
            sd[L.OPENCLIP_XL + "logit_scale"] = torch.tensor(4.6)
    if extras:
        sd["alphas_cumprod"] = torch.linspace(0.99, 0.01, 1000)
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def write_ldm_checkpoint(model, path: str, extras: bool = True, edit=None) -> dict:
    """Writes ldm_state_dict(model) (after edit(sd), if given) with safetensors; returns the dict."""
    from safetensors.torch import save_file
    sd = ldm_state_dict(model, extras)
    if edit:
        edit(sd)
    save_file(sd, path)
    return sd


def write_diffusers_folder(path: str, unet, vae, text_encoder, scheduler_config: dict):
    """A diffusers pipeline folder: unet/, vae/, text_encoder/ (save_pretrained, safetensors),
    scheduler/scheduler_config.json and model_index.json; no tokenizer/ (--tokenizer supplies it)."""
    import json
    unet.save_pretrained(os.path.join(path, "unet"))
    vae.save_pretrained(os.path.join(path, "vae"))
    text_encoder.save_pretrained(os.path.join(path, "text_encoder"))
    os.makedirs(os.path.join(path, "scheduler"), exist_ok=True)
    with open(os.path.join(path, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(scheduler_config, f)
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline"}, f)
