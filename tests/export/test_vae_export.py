#!/usr/bin/env python3
"""tools/export/vae.py against diffusers' AutoencoderKL.decode on random weights.

The scripted decoder (saved and reloaded) must give `vae.decode(z).sample`
within 1e-4 relative at reduced width (channels 16-32, batch 1 and 2,
square and non-square latents, with and without the mid-block attention).
On the meta device: the SD VAE decoder with post_quant_conv has 49,490,199
parameters in 140 tensors, and the LDM key map sends the 248 `first_stage_model.*`
tensors of an SD 1.x file onto it (140 one to one, 108 encoder/quant_conv
tensors dropped), the same pairing as diffusers' convert_ldm_vae_checkpoint.
Exit 0 pass, 1 fail, 77 skip (diffusers absent).
"""
from __future__ import annotations

import sys

from export_test_util import check, need, rel_err, run, scripted

need("torch", "diffusers")

import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402

import vae as V  # noqa: E402
from errors import ExportError  # noqa: E402

SD_VAE = dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, in_channels=3,
              out_channels=3, norm_num_groups=32, down_block_types=["DownEncoderBlock2D"] * 4,
              up_block_types=["UpDecoderBlock2D"] * 4)


def random_vae(seed: int, **cfg) -> AutoencoderKL:
    torch.manual_seed(seed)
    levels = len(cfg["block_out_channels"])
    vae = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
                        latent_channels=4, **cfg).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae


def test_decode_matches_diffusers():
    """Batch 1 and 2, square and non-square, 2 and 3 levels, mid attention on and off."""
    configs = [dict(block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=8),
               dict(block_out_channels=[16, 32, 32], layers_per_block=2, norm_num_groups=8),
               dict(block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=8,
                    mid_block_add_attention=False)]
    for i, cfg in enumerate(configs):
        vae = random_vae(10 + i, **cfg)
        module = scripted(V.from_diffusers(vae))
        factor = 2 ** (len(cfg["block_out_channels"]) - 1)
        for shape in ((1, 4, 8, 8), (2, 4, 6, 10)):
            z = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
            with torch.no_grad():
                ref = vae.decode(z).sample
                got = module(z)
            check(got.shape == (shape[0], 3, shape[2] * factor, shape[3] * factor), f"shape {tuple(got.shape)}")
            err = rel_err(got, ref)
            check(err < 1e-4, f"config {i} latents {shape}: relative error {err:.2e}")
    graph = str(torch.jit.script(V.from_diffusers(random_vae(1, **configs[0]))).inlined_graph)
    check("aten::scaled_dot_product_attention" in graph, "mid-block attention does not call SDPA")


def ldm_vae_keys() -> dict:
    """The `first_stage_model.*` tensor names of an SD 1.x single-file checkpoint, written from the LDM
    autoencoder (ldm/modules/diffusionmodules/model.py: Encoder, Decoder; quant_conv, post_quant_conv),
    each mapped to a shape: [2, 2, 1, 1] for attention weights, [1] otherwise (enough for renaming)."""
    resnet = ("norm1", "conv1", "norm2", "conv2")
    attn = ("norm", "q", "k", "v", "proj_out")
    widths = SD_VAE["block_out_channels"]
    names = []

    def block(prefix, cin, cout):
        names.extend(f"{prefix}.{p}" for p in resnet + (("nin_shortcut",) if cin != cout else ()))

    for side in ("encoder", "decoder"):
        names += [f"{side}.conv_in", f"{side}.norm_out", f"{side}.conv_out"]
        block(f"{side}.mid.block_1", 512, 512)
        block(f"{side}.mid.block_2", 512, 512)
        names.extend(f"{side}.mid.attn_1.{p}" for p in attn)
    cin = widths[0]
    for level, width in enumerate(widths):  # encoder: 2 blocks per level, downsample except the last
        for j in range(2):
            block(f"encoder.down.{level}.block.{j}", cin if j == 0 else width, width)
        cin = width
        if level < len(widths) - 1:
            names.append(f"encoder.down.{level}.downsample.conv")
    cin = widths[-1]
    for level in reversed(range(len(widths))):  # decoder: 3 blocks per level, upsample except level 0
        for j in range(3):
            block(f"decoder.up.{level}.block.{j}", cin if j == 0 else widths[level], widths[level])
        cin = widths[level]
        if level > 0:
            names.append(f"decoder.up.{level}.upsample.conv")
    names += ["quant_conv", "post_quant_conv"]
    keys = {}
    for n in names:
        is_attn = ".attn_1." in n and not n.endswith(".norm")
        keys[f"first_stage_model.{n}.weight"] = (2, 2, 1, 1) if is_attn else (1,)
        keys[f"first_stage_model.{n}.bias"] = (1,)
    return keys


def test_ldm_key_map_and_count():
    """49,490,199 parameters; 248 LDM keys: 140 mapped one to one, 108 encoder keys dropped."""
    module = V.build(SD_VAE, device="meta")
    state = module.state_dict()
    count = sum(p.numel() for p in module.parameters())
    check(count == 49_490_199 and len(state) == 140, f"{count} parameters in {len(state)} tensors")
    with torch.device("meta"):
        ref = AutoencoderKL(**SD_VAE)
    ref_state = {k: v for k, v in ref.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    check({k: v.shape for k, v in ref_state.items()} == {k: v.shape for k, v in state.items()},
          "module tensors differ from diffusers' decoder + post_quant_conv")
    shapes = ldm_vae_keys()
    check(len(shapes) == 248, f"LDM layout has {len(shapes)} tensors, expected 248")
    mapping, dropped, unknown = V.ldm_key_map(list(shapes) + ["cond_stage_model.transformer.x"])
    check(len(mapping) == 140 and len(dropped) == 108 and not unknown,
          f"{len(mapping)} mapped, {len(dropped)} dropped, unknown {unknown[:4]}")
    check(sorted(mapping.values()) == sorted(state), "mapping is not one to one onto the module")
    # diffusers' own conversion as the oracle of the pairing: tag each tensor with its index.
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    tagged = {k: torch.full(s, float(i)) for i, (k, s) in enumerate(shapes.items())}
    index = {k: i for i, k in enumerate(shapes)}
    converted = convert_ldm_vae_checkpoint(dict(tagged), dict(SD_VAE))
    for src, dst in mapping.items():
        check(dst in converted and int(converted[dst].flatten()[0]) == index[src],
              f"{src} -> {dst}, diffusers disagrees")
    ours = V.convert_ldm_state_dict(tagged)
    check(all(ours[k].shape == converted[k].shape for k in ours), "attention weights not reshaped as diffusers")


def test_errors():
    try:
        V.build(dict(SD_VAE, up_block_types=["AttnUpDecoderBlock2D"] * 4))
    except ExportError as e:
        check("up_block_types" in str(e) and "\n" not in str(e), str(e))
    else:
        raise AssertionError("an unsupported up block type was accepted")
    try:
        V.convert_ldm_state_dict({"first_stage_model.decoder.foo.weight": torch.zeros(1)})
    except ExportError as e:
        check("decoder.foo" in str(e), str(e))
    else:
        raise AssertionError("an unknown LDM VAE key was accepted")


if __name__ == "__main__":
    sys.exit(run([test_decode_matches_diffusers, test_ldm_key_map_and_count, test_errors]))
