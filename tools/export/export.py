#!/usr/bin/env python3
"""Exports a Stable Diffusion model as a fewstep package (README, "Model packages").

  .venv/bin/python tools/export/export.py (--checkpoint FILE.safetensors | --diffusers DIR | --random-init ARCH)
      --out PKG [--arch sd15|sd21|sd21-v|sdxl|sd-turbo|sdxl-turbo] [--lora FILE[:SCALE]]...
      [--dtype fp16|fp32] [--model-channels N] [--tokenizer PATH]

Sources: a single-file checkpoint in the original LDM layout (SD 1.x, SD 2.x, SDXL base; read with
the safetensors library), a diffusers folder (its config.json files decide the architecture, LCM
UNets included), or random weights of a named architecture (reduced with --model-channels N).
LoRAs are merged into the weights before conversion. Works offline (HF_HUB_OFFLINE=1): the
architectures' configs are shipped in tools/export/configs/.

The package: model.json, unet.pt (block-wise, tools/export/unet.py), text_encoder.pt
[+ text_encoder_2.pt], vae_decoder.pt, tokenizer/ [+ tokenizer_2/]. It is built in a temporary
folder beside PKG and renamed into place; on any error nothing is left behind, and the error is
one line on stderr (exit status 1; 2 for bad flags).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from errors import ExportError  # noqa: E402

ARCHS = ("sd15", "sd21", "sd21-v", "sdxl", "sd-turbo", "sdxl-turbo")
# UNet self-check: the scripted module against diffusers' on one random input, fp32 (BRIEF: 1e-4 relative).
CHECK_RTOL = 1e-4


def helper(name: str):
    """Imports one of the exporter's converter modules (text_encoder, vae, tokenizer_files, lora)
    when it is needed; ExportError when the file is not there."""
    import importlib
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise ExportError("tools/export/%s.py is missing: this checkout cannot export that part" % name) from None


def parse_lora(spec: str):
    """'FILE[:SCALE]' -> (FILE, SCALE float, default 1.0); ExportError for a missing file or bad scale."""
    path, scale = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            scale = float(tail)
            path = head
        except ValueError:
            pass
    if not os.path.isfile(path):
        raise ExportError("--lora %s: no such file" % path)
    return path, scale


def load_model(args):
    """The source named by the flags as a sources.Model (fp32 modules)."""
    import sources
    if args.model_channels is not None and not args.random_init:
        raise ExportError("--model-channels only applies to --random-init")
    if args.random_init:
        if args.arch and args.arch != args.random_init:
            raise ExportError("--arch %s contradicts --random-init %s" % (args.arch, args.random_init))
        if sources.have_oracles():
            model = sources.from_random(args.random_init, args.model_channels)
        else:
            if args.lora:
                raise ExportError("--lora needs diffusers and transformers (pip install -r tools/requirements.txt)")
            model = sources.random_metadata(args.random_init, args.model_channels)
        model.tokenizers = [args.tokenizer] * len(model.roles)
        return model
    if args.diffusers:
        return sources.from_diffusers_dir(args.diffusers, args.arch, args.tokenizer)
    return sources.from_checkpoint(args.checkpoint, args.arch, args.tokenizer)


def check_unet(ref, scripted, cfg) -> float:
    """Relative L2 error of the scripted block-wise UNet against diffusers' UNet2DConditionModel on one
    random input (batch 2, the smallest size with two steps per level), fp32. Raises ExportError above
    CHECK_RTOL."""
    import torch
    import unet as unet_mod
    s = unet_mod.unet_spec(cfg)
    side = 2 * 2 ** (len(s["channels"]) - 1)
    args, kwargs = unet_mod.example_inputs(cfg, 2, side, side + side // 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(*args[:3], **kwargs).sample
        got = unet_mod.run_blockwise(scripted, *args)
    err = ((got - want).norm() / want.norm().clamp_min(1e-30)).item()
    if not err <= CHECK_RTOL:
        raise ExportError("the exported UNet differs from diffusers' by %.3g (relative; limit %g)" % (err, CHECK_RTOL))
    return err


def save_script(module, path: str, dtype):
    """torch.jit.script (unless it is already a ScriptModule), weights cast to dtype, saved to path."""
    import torch
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module.eval())
    torch.jit.save(scripted.to(dtype), path)


def tokenizer_entry(pkg: str, sub: str, source, role: str) -> dict:
    """Writes pkg/sub with tokenizer_files.write_tokenizer and returns its manifest entry (paths
    relative to the package). A tokenizer folder brings its own pad token; for a merges file the
    text encoder's role decides (CLIP-L pads with the end token, OpenCLIP with "!", id 0)."""
    tf = helper("tokenizer_files")
    pad = None if source and os.path.isdir(source) else tf.PAD_TOKEN_BY_ROLE[role]
    return dict(tf.write_tokenizer(os.path.join(pkg, sub), source, pad_token=pad))


@dataclass
class Parts:
    """fewstep's modules of one model and the configs (dicts) the manifest is written from."""
    unet: object
    unet_config: dict
    texts: list  # [(module, role, CLIPTextConfig-style dict)]
    vae: object
    vae_config: dict


def convert(model) -> Parts:
    """The diffusers/transformers modules of a sources.Model as fewstep's modules (sharing their
    weights); the scripted UNet is checked against diffusers'. The model's modules are released."""
    import torch
    import unet as unet_mod
    ucfg = dict(model.unet.config)
    mine = unet_mod.from_diffusers(model.unet)
    scripted = torch.jit.script(mine)
    err = check_unet(model.unet, scripted, ucfg)
    print("unet: %d parameters, scripted vs diffusers relative error %.2g" % (
        sum(p.numel() for p in mine.parameters()), err))
    te_mod = helper("text_encoder")
    texts = [(te_mod.from_transformers(te, role), role, te.config.to_dict())
             for te, role in zip(model.text_encoders, model.roles)]
    parts = Parts(scripted, ucfg, texts, helper("vae").from_diffusers(model.vae), dict(model.vae.config))
    model.unet, model.vae, model.text_encoders = None, None, []  # the fp32 originals can go
    return parts


def random_parts(model) -> Parts:
    """Random weights in fewstep's own modules, PyTorch's default initialisation (seed 0): what
    --random-init writes where diffusers/transformers are not installed (needs only torch)."""
    import torch
    import unet as unet_mod
    cfg = model.source["config"]
    torch.manual_seed(model.source["seed"])
    te_mod, vae_mod = helper("text_encoder"), helper("vae")
    keys = ["text_encoder", "text_encoder_2"][: len(model.roles)]
    texts = [(te_mod.build(cfg[k], role), role, cfg[k]) for k, role in zip(keys, model.roles)]
    return Parts(unet_mod.UNet(cfg["unet"]).eval(), cfg["unet"], texts, vae_mod.build(cfg["vae"]), cfg["vae"])


def write_package(model, parts: Parts, pkg: str, dtype_name: str, name: str, loras) -> dict:
    """Writes parts (TorchScript, weights in dtype_name) and model.json into the folder pkg;
    returns the manifest."""
    import torch
    import unet as unet_mod
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    ucfg, vcfg = parts.unet_config, parts.vae_config
    save_script(parts.unet, os.path.join(pkg, "unet.pt"), dtype)
    parts.unet = None
    entries = {}
    for i, (module, role, tc) in enumerate(parts.texts):
        key, sub = ("text_encoder", "tokenizer") if i == 0 else ("text_encoder_2", "tokenizer_2")
        save_script(module, os.path.join(pkg, key + ".pt"), dtype)
        entries[key] = {"file": key + ".pt", "context_length": tc["max_position_embeddings"],
                        "hidden_size": tc["hidden_size"]}
        if role == "sdxl_te2":
            entries[key]["pooled_size"] = tc["projection_dim"]
        entries[sub] = tokenizer_entry(pkg, sub, model.tokenizers[i], role)
    save_script(parts.vae, os.path.join(pkg, "vae_decoder.pt"), dtype)
    sample = ucfg.get("sample_size", 64)
    sample = list(sample) if isinstance(sample, (list, tuple)) else [sample, sample]
    vae_scale = 2 ** (len(vcfg["block_out_channels"]) - 1)
    scheduler, dropped = helper("scheduler_keys").runtime_config(model.scheduler)
    scheduler.setdefault("num_train_timesteps", 1000)
    scheduler.setdefault("prediction_type", "epsilon")
    defaults = dict(model.defaults, height=sample[0] * vae_scale, width=sample[1] * vae_scale)
    random = model.source.get("kind") == "random-init"
    source = {k: v for k, v in model.source.items() if k != "config"}
    manifest = {
        "format_version": 1,
        "name": name,
        "kind": "latent",
        "sample_size": sample,
        "in_channels": ucfg.get("in_channels", 4),
        "vae_scale_factor": vae_scale,
        "scheduler": scheduler,
        "unet": unet_mod.manifest_entry(ucfg),
        **{k: entries[k] for k in ("text_encoder", "tokenizer")},
        **{k: entries[k] for k in ("text_encoder_2", "tokenizer_2") if k in entries},
        "vae_decoder": {"file": "vae_decoder.pt", "scaling_factor": vcfg.get("scaling_factor", 0.18215)},
        "guidance": model.guidance,
        "defaults": defaults,
        "license": "none: random weights" if random else "the license of the source model applies",
        "attribution": ("random weights in the %s architecture" % model.arch if random
                        else "exported from %s" % os.path.basename(model.source.get("path", ""))),
        "export": dict(source, arch=model.arch, dtype=dtype_name,
                       loras=[{"file": os.path.abspath(p), "scale": s} for p, s in loras],
                       tool="tools/export/export.py"),
    }
    if dropped:  # as text: -inf (DPM-Solver's lambda_min_clipped) is not JSON
        manifest["export"]["scheduler_keys_left_out"] = {k: repr(v) for k, v in dropped.items()}
    with open(os.path.join(pkg, "model.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, allow_nan=False)
        f.write("\n")
    return manifest


def place(tmp: str, out: str):
    """Renames the finished folder tmp to out; an existing package at out is replaced (moved aside,
    then deleted), anything else there is an error."""
    if os.path.lexists(out):
        if not (os.path.isdir(out) and not os.path.islink(out) and os.path.isfile(os.path.join(out, "model.json"))):
            raise ExportError("--out %s exists and is not a fewstep package: remove it or choose another" % out)
        old = tempfile.mkdtemp(prefix=".old-" + os.path.basename(out) + ".", dir=os.path.dirname(out) or ".")
        os.rename(out, os.path.join(old, "pkg"))
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def export(args) -> dict:
    """The whole export; ExportError for bad input. Returns the manifest written."""
    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise ExportError("--out %s: the folder %s does not exist" % (args.out, parent))
    if os.path.lexists(out) and not os.path.isfile(os.path.join(out, "model.json")):
        raise ExportError("--out %s exists and is not a fewstep package: remove it or choose another" % args.out)
    loras = [parse_lora(s) for s in args.lora]
    t0 = time.time()
    model = load_model(args)
    if loras:
        helper("lora").merge_loras(model.unet, model.text_encoders, loras)
    parts = convert(model) if model.unet is not None else random_parts(model)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make the package private
    try:
        manifest = write_package(model, parts, tmp, args.dtype, os.path.basename(out), loras)
        place(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    left_out = manifest["export"].get("scheduler_keys_left_out")
    if left_out:
        print("note: scheduler settings fewstep does not implement were left out of model.json: " +
              ", ".join("%s=%s" % kv for kv in left_out.items()))
    print("wrote %s (%s %s, %.1f MB) in %.1f s" % (args.out, model.arch, args.dtype, size / 1e6, time.time() - t0))
    return manifest


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, "export.py: %s (see --help)\n" % message)


def parse_args(argv):
    """The command line (module docstring); a bad flag exits 2 with one line on stderr."""
    ap = _Parser(prog="export.py", description="Export a Stable Diffusion model as a fewstep package.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="FILE", help="single-file checkpoint in the original LDM layout (.safetensors)")
    src.add_argument("--diffusers", metavar="DIR", help="diffusers pipeline folder")
    src.add_argument("--random-init", metavar="ARCH", choices=ARCHS, help="random weights of ARCH")
    ap.add_argument("--out", required=True, metavar="PKG", help="package folder to write (replaced if it is one)")
    ap.add_argument("--arch", choices=ARCHS, help="architecture and defaults when the source cannot tell")
    ap.add_argument("--lora", action="append", default=[], metavar="FILE[:SCALE]",
                    help="LoRA merged into the weights (kohya or diffusers/PEFT format), repeatable")
    ap.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="stored weights (default fp16)")
    ap.add_argument("--model-channels", type=int, metavar="N",
                    help="with --random-init: UNet width N, text encoders 2N x 2 layers, VAE N/2")
    ap.add_argument("--tokenizer", metavar="PATH", help="tokenizer files when the source has none")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    """Runs the export; returns the exit status (0, 1 for bad input, 130 when interrupted)."""
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        export(args)
    except ExportError as e:
        print("export.py: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("export.py: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # unwritable --out folder, full disk, unreadable source
        print("export.py: %s" % (str(e).strip().splitlines() or [type(e).__name__])[0], file=sys.stderr)
        return 1
    except MemoryError:
        print("export.py: out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # a defect here, or a library's error on odd input: still one line
        line = (str(e).strip().splitlines() or [""])[0]
        print("export.py: internal error: %s: %s" % (type(e).__name__, line), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
