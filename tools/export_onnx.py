#!/usr/bin/env python3
"""Exports a fewstep package's UNet to ONNX for the ONNX Runtime peer bench (bench/ort/).

The graph comes from the eager model in tools/emoji/model.py, UNet(channels,
attn, d_ctx), loaded with the package's own weights (unet.pt's state dict,
stored in fp16, run in fp32 as fewstep runs it on CPU). The architecture is
read off the weight names and shapes, and load_state_dict(strict=True) proves
that it matches. Exported with torch.onnx.export (the TorchScript-based
exporter, opset 17) with a dynamic batch, then checked: ONNX Runtime's output
must match the eager model's within 1e-4 (both fp32).

Bench-only: needs onnxruntime (bench/requirements.txt), not a runtime or test
dependency of fewstep.

Usage: tools/export_onnx.py [--model models/emoji] [--out build/onnx/emoji_unet.onnx]
"""
import argparse
import json
import os
import re
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "emoji"))
from model import UNet  # noqa: E402


def package_state_dict(pkg):
    """The package UNet's parameters as {name: fp32 tensor} (module key names)."""
    m = torch.jit.load(os.path.join(pkg, "unet.pt"), map_location="cpu")
    return {k: v.float() if v.is_floating_point() else v for k, v in m.state_dict().items()}


def infer_config(sd):
    """UNet(channels, attn, d_ctx, in_channels, num_res_blocks) arguments from
    the weight names of a tools/emoji/model.py UNet. Raises SystemExit when the
    names are not that model's."""
    if "input_blocks.0.layers.0.conv.weight" not in sd:
        sys.exit("export_onnx.py: the package's unet.pt is not a tools/emoji/model.py UNet "
                 "(no input_blocks.0.layers.0.conv.weight)")
    in_channels = sd["input_blocks.0.layers.0.conv.weight"].shape[1]
    blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(r"input_blocks\.(\d+)\.", k)] if m})
    channels, attn, res_per_level, count = [], [], [], 0
    for i in blocks[1:]:
        key = "input_blocks.%d.layers.0.conv1.weight" % i
        if key in sd:  # a ResBlock (optionally followed by a Transformer)
            if count == 0:
                channels.append(sd[key].shape[0])
                attn.append("input_blocks.%d.layers.1.norm.weight" % i in sd)
            count += 1
        else:  # a Downsample closes the level
            res_per_level.append(count)
            count = 0
    res_per_level.append(count)
    if len(set(res_per_level)) != 1:
        sys.exit("export_onnx.py: levels have different ResBlock counts %s" % res_per_level)
    d_ctx = next(v.shape[1] for k, v in sd.items() if k.endswith("kv2.weight"))
    return dict(channels=tuple(channels), attn=tuple(attn), d_ctx=d_ctx, in_channels=in_channels,
                num_res_blocks=res_per_level[0])


def main():
    ap = argparse.ArgumentParser(description="export a package's UNet to ONNX")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "emoji"), help="package folder")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "onnx", "emoji_unet.onnx"))
    ap.add_argument("--batch", type=int, default=2, help="batch of the example input (the axis is dynamic)")
    args = ap.parse_args()
    sd = package_state_dict(args.model)
    cfg = infer_config(sd)
    unet = UNet(**cfg)
    unet.load_state_dict(sd, strict=True)
    unet.eval()
    with open(os.path.join(args.model, "model.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    h, w = manifest["defaults"]["height"], manifest["defaults"]["width"]
    ctx_len = manifest["text_encoder"]["context_length"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, cfg["in_channels"], h, w, generator=g)
    t = torch.full((args.batch,), 500.0)
    ctx = torch.randn(args.batch, ctx_len, cfg["d_ctx"], generator=g)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    # The tracer records the attention's head-dim padding as constants (the
    # head dims are fixed by the weights) and the exporter is the legacy one
    # on purpose (it handles the scripted-free eager model directly).
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with torch.no_grad():
        ref = unet(x, t, ctx)
        torch.onnx.export(unet, (x, t, ctx), tmp, input_names=["sample", "timestep", "encoder_hidden_states"],
                          output_names=["out"], opset_version=17, dynamo=False,
                          dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"},
                                        "encoder_hidden_states": {0: "batch"}, "out": {0: "batch"}})
    import onnxruntime as ort
    sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"sample": x.numpy(), "timestep": t.numpy(), "encoder_hidden_states": ctx.numpy()})[0]
    err = (torch.from_numpy(got) - ref).abs().max().item()
    if not err < 1e-4:
        os.remove(tmp)
        sys.exit("export_onnx.py: ONNX Runtime differs from the eager model by %.3g (> 1e-4)" % err)
    os.replace(tmp, args.out)
    print("%s: %s, config %s; ONNX Runtime vs eager max abs error %.3g"
          % (args.out, args.model, cfg, err))


if __name__ == "__main__":
    main()
