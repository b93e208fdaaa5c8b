"""The original LDM single-file layout (CompVis/Stability checkpoints): architecture detection,
diffusers/transformers configs inferred from tensor shapes, and the expected key layout of every
component so that a checkpoint's keys and shapes are checked before any weight is converted.

Components and their prefixes (Rombach et al. 2022 code; SDXL's sgm code, Podell et al. 2023):
  UNet                 model.diffusion_model.*
  VAE                  first_stage_model.*  (the decoder and post_quant_conv are required)
  SD 1.x text          cond_stage_model.transformer.text_model.*   (CLIP ViT-L/14, transformers layout)
  SD 2.x text          cond_stage_model.model.*                    (OpenCLIP ViT-H/14; its last layer unused)
  SDXL text 1 / 2      conditioner.embedders.0.transformer.text_model.* / conditioner.embedders.1.model.*

The converters from LDM to diffusers/transformers names are diffusers' own
(diffusers.loaders.single_file_utils); the functions `*_to_ldm` here are their inverses, used to
list what a checkpoint must hold (and by the tests to write checkpoints in this layout).
"""
import copy
import math
import re
from typing import Dict, List, Optional, Tuple

import torch

import unet as unet_mod
from errors import ExportError

UNET = unet_mod.LDM_UNET_PREFIX
VAE = "first_stage_model."
CLIP_SD1 = "cond_stage_model.transformer."
OPENCLIP_SD2 = "cond_stage_model.model."
CLIP_XL = "conditioner.embedders.0.transformer."
OPENCLIP_XL = "conditioner.embedders.1.model."
# Tensors of the DDPM wrapper and EMA copies that LDM checkpoints carry and the export does not use.
IGNORED = re.compile(r"^(betas|alphas_cumprod|alphas_cumprod_prev|sqrt_alphas_cumprod|"
                     r"sqrt_one_minus_alphas_cumprod|log_one_minus_alphas_cumprod|sqrt_recip_alphas_cumprod|"
                     r"sqrt_recipm1_alphas_cumprod|posterior_variance|posterior_log_variance_clipped|"
                     r"posterior_mean_coef1|posterior_mean_coef2|logvar|v_pred|model_ema\..*|denoiser\..*)$")

Shapes = Dict[str, Tuple[int, ...]]


def heads_for(width: int) -> int:
    """Head count of the width-sized architectures (head dim 64): max(1, width // 64), lowered until
    it divides the width."""
    h = max(1, width // 64)
    while width % h:
        h -= 1
    return h


def norm_groups(width: int) -> int:
    """GroupNorm groups for a reduced width: 32 where it divides, else the largest common divisor."""
    return math.gcd(32, width)


def _indices(shapes: Shapes, pattern: str) -> List[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes for m in [rx.match(k)] if m})


def _shape(shapes: Shapes, key: str, what: str) -> Tuple[int, ...]:
    if key not in shapes:
        raise ExportError("missing key %s (%s)" % (key, what))
    return tuple(shapes[key])


def _dim(shapes: Shapes, key: str, axis: int, default: int) -> int:
    """One size of a tensor, or default when the key is absent (check_layout then reports it)."""
    return shapes[key][axis] if key in shapes and len(shapes[key]) > axis else default


def detect_family(shapes: Shapes) -> str:
    """'sd1', 'sd2' or 'sdxl' from the keys and shapes of an LDM checkpoint; ExportError when it
    is none of them (the message says which flag or file would do)."""
    if UNET + "input_blocks.0.0.weight" not in shapes:
        if any(k.startswith(("lora_unet_", "lora_te", "unet.", "lora.")) or ".lora_" in k for k in shapes):
            raise ExportError("holds LoRA weights, not a model: pass it with --lora")
        if any(k.startswith(("down_blocks.", "unet.down_blocks.")) for k in shapes):
            raise ExportError("is in diffusers' key layout; export its diffusers folder with --diffusers")
        raise ExportError("has no model.diffusion_model.* UNet: not a checkpoint in the original LDM layout")
    in_ch = shapes[UNET + "input_blocks.0.0.weight"][1]
    if in_ch != 4:
        raise ExportError("has a UNet with %d input channels (inpainting or instruct-pix2pix?): only "
                          "text-to-image UNets with 4 latent channels are supported" % in_ch)
    if UNET + "label_emb.0.0.weight" in shapes:
        if any(k.startswith(OPENCLIP_XL) for k in shapes) or not any(k.startswith("conditioner.") for k in shapes):
            return "sdxl"
        raise ExportError("looks like an SDXL refiner (one OpenCLIP text encoder): not supported")
    proj = [k for k in shapes if re.match(re.escape(UNET) + r"(input_blocks\.\d+|middle_block)\.1\.proj_in\.weight$", k)]
    if not proj:
        raise ExportError("cannot tell its architecture from its keys (no attention in the UNet); pass --arch")
    linear = len(shapes[proj[0]]) == 2
    has_clip = any(k.startswith(CLIP_SD1) for k in shapes)
    has_openclip = any(k.startswith(OPENCLIP_SD2) for k in shapes)
    if linear and has_openclip and not has_clip:
        return "sd2"
    if not linear and has_clip and not has_openclip:
        return "sd1"
    raise ExportError("cannot tell its architecture from its keys (the UNet's projections and the text "
                      "encoder disagree); pass --arch")


def infer_unet_config(shapes: Shapes, base: dict, family: str) -> dict:
    """The diffusers UNet2DConditionModel config of the checkpoint's UNet: the architecture's shipped
    config with widths, levels, depths and context size read from the tensor shapes; heads by the
    architecture's rule (SD 1.x: the shipped count; SD 2.x/SDXL: heads_for(width))."""
    cfg = copy.deepcopy(base)
    conv_in = _shape(shapes, UNET + "input_blocks.0.0.weight", "UNet conv_in")
    blocks = _indices(shapes, re.escape(UNET) + r"input_blocks\.(\d+)\.")
    levels: List[List[int]] = [[]]
    for i in blocks[1:]:
        if UNET + "input_blocks.%d.0.op.weight" % i in shapes:
            levels.append([])
        else:
            levels[-1].append(i)
    if not levels[0] or any(len(lv) != len(levels[0]) for lv in levels):
        raise ExportError("UNet input blocks do not form levels of equal depth")
    channels, attn, depth = [], [], []
    for lv in levels:
        i = lv[0]
        channels.append(_shape(shapes, UNET + "input_blocks.%d.0.out_layers.3.weight" % i, "UNet ResBlock")[0])
        n = len(_indices(shapes, re.escape(UNET) + r"input_blocks\.%d\.1\.transformer_blocks\.(\d+)\." % i))
        attn.append(n > 0)
        depth.append(n)
    mid_depth = len(_indices(shapes, re.escape(UNET) + r"middle_block\.1\.transformer_blocks\.(\d+)\."))
    if mid_depth == 0:
        raise ExportError("UNet middle block has no transformer")
    if attn[-1] and depth[-1] != mid_depth:
        raise ExportError("UNet: the deepest level's transformer depth %d differs from the middle block's %d"
                          % (depth[-1], mid_depth))
    depth = [d if d else 1 for d in depth[:-1]] + [mid_depth]
    out_levels = len(channels)
    per = len(levels[0]) + 1
    up_attn = []
    for lvl in range(out_levels):
        first = lvl * per
        up_attn.append(UNET + "output_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight" % first in shapes)
    to_k = [k for k in shapes if k.startswith(UNET) and k.endswith("attn2.to_k.weight")]
    cfg.update({
        "in_channels": conv_in[1],
        "out_channels": _dim(shapes, UNET + "out.2.weight", 0, base.get("out_channels", 4)),
        "block_out_channels": channels,
        "layers_per_block": len(levels[0]),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in up_attn],
        "transformer_layers_per_block": depth[0] if len(set(depth)) == 1 else depth,
        "cross_attention_dim": shapes[to_k[0]][1],
        "norm_num_groups": norm_groups(channels[0]),
    })
    if family != "sd1":
        cfg["attention_head_dim"] = [heads_for(c) for c in channels]
    if UNET + "label_emb.0.0.weight" in shapes:
        cfg["projection_class_embeddings_input_dim"] = shapes[UNET + "label_emb.0.0.weight"][1]
    return cfg


def infer_vae_config(shapes: Shapes, base: dict) -> dict:
    """AutoencoderKL config from the first_stage_model.* shapes (levels, widths, depth, latent channels)."""
    cfg = copy.deepcopy(base)
    ups = _indices(shapes, re.escape(VAE) + r"decoder\.up\.(\d+)\.")
    if not ups:
        raise ExportError("missing key %sdecoder.up.0.block.0.conv1.weight (VAE decoder)" % VAE)
    channels = [_shape(shapes, VAE + "decoder.up.%d.block.0.conv2.weight" % i, "VAE decoder")[0] for i in ups]
    per = len(_indices(shapes, re.escape(VAE) + r"decoder\.up\.0\.block\.(\d+)\."))
    enc_in = shapes.get(VAE + "encoder.conv_in.weight")
    cfg.update({
        "block_out_channels": channels,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "layers_per_block": per - 1,
        "latent_channels": _dim(shapes, VAE + "post_quant_conv.weight", 0, base.get("latent_channels", 4)),
        "out_channels": _dim(shapes, VAE + "decoder.conv_out.weight", 0, base.get("out_channels", 3)),
        "in_channels": enc_in[1] if enc_in else base.get("in_channels", 3),
        "norm_num_groups": norm_groups(channels[0]),
    })
    return cfg


def infer_clip_config(shapes: Shapes, prefix: str, base: dict) -> dict:
    """CLIPTextConfig dict of a transformers-layout CLIP text model under prefix + 'text_model.'."""
    p = prefix + "text_model."
    vocab, hidden = _shape(shapes, p + "embeddings.token_embedding.weight", "CLIP text encoder")
    cfg = copy.deepcopy(base)
    cfg.update({
        "vocab_size": vocab, "hidden_size": hidden, "num_attention_heads": heads_for(hidden),
        "max_position_embeddings": _shape(shapes, p + "embeddings.position_embedding.weight", "CLIP")[0],
        "num_hidden_layers": len(_indices(shapes, re.escape(p) + r"encoder\.layers\.(\d+)\.")),
        "intermediate_size": _shape(shapes, p + "encoder.layers.0.mlp.fc1.weight", "CLIP")[0],
    })
    return cfg


def infer_openclip_config(shapes: Shapes, prefix: str, base: dict, penultimate: bool) -> dict:
    """CLIPTextConfig dict of an OpenCLIP text tower under prefix; with penultimate (SD 2.x) the
    transformers model has one layer fewer than the checkpoint (LDM uses the penultimate layer)."""
    vocab, hidden = _shape(shapes, prefix + "token_embedding.weight", "OpenCLIP text encoder")
    layers = len(_indices(shapes, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\."))
    cfg = copy.deepcopy(base)
    cfg.update({
        "vocab_size": vocab, "hidden_size": hidden, "num_attention_heads": heads_for(hidden),
        "max_position_embeddings": _shape(shapes, prefix + "positional_embedding", "OpenCLIP")[0],
        "num_hidden_layers": layers - 1 if penultimate else layers,
        "intermediate_size": _shape(shapes, prefix + "transformer.resblocks.0.mlp.c_fc.weight", "OpenCLIP")[0],
    })
    if prefix + "text_projection" in shapes and not penultimate:
        cfg["projection_dim"] = shapes[prefix + "text_projection"][1]
    return cfg


def vae_to_ldm(sd: Dict[str, torch.Tensor], levels: int) -> Dict[str, torch.Tensor]:
    """AutoencoderKL state dict -> first_stage_model.* (mid attention weights as 1x1 convs)."""
    out = {}
    for k, v in sd.items():
        n = k.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        n = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", n)
        n = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", n)
        n = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.",
                   lambda m: "decoder.up.%d.block." % (levels - 1 - int(m.group(1))), n)
        n = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                   lambda m: "decoder.up.%d.upsample." % (levels - 1 - int(m.group(1))), n)
        n = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: ".mid.block_%d." % (int(m.group(1)) + 1), n)
        attn = ".mid_block.attentions.0." in n
        n = n.replace(".mid_block.attentions.0.", ".mid.attn_1.")
        for a, b in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            n = n.replace(".attn_1.%s." % a, ".attn_1.%s." % b)
        if attn and v.dim() == 2:
            v = v[:, :, None, None]
        out[VAE + n] = v
    return out


def clip_to_ldm(sd: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """CLIPTextModel state dict (transformers layout, with or without 'text_model.') -> prefix + 'text_model.*'."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()}


def openclip_to_ldm(sd: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """CLIPTextModel(WithProjection) state dict -> OpenCLIP text tower under prefix (q, k, v fused
    into in_proj; text_projection stored [hidden, proj] as OpenCLIP multiplies x @ P)."""
    sd = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in sd.items()}
    out = {}
    qkv: Dict[str, Dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", k)
        if m:
            qkv.setdefault("transformer.resblocks.%s.attn.in_proj_%s" % (m.group(1), m.group(3)), {})[m.group(2)] = v
            continue
        if k == "text_projection.weight":
            out[prefix + "text_projection"] = v.t()
            continue
        n = {"embeddings.token_embedding.weight": "token_embedding.weight",
             "embeddings.position_embedding.weight": "positional_embedding",
             "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}.get(k)
        if n is None:
            n = re.sub(r"^encoder\.layers\.", "transformer.resblocks.", k)
            n = (n.replace(".layer_norm1.", ".ln_1.").replace(".layer_norm2.", ".ln_2.")
                 .replace(".mlp.fc1.", ".mlp.c_fc.").replace(".mlp.fc2.", ".mlp.c_proj.")
                 .replace(".self_attn.out_proj.", ".attn.out_proj."))
        out[prefix + n] = v
    for name, parts in qkv.items():
        out[prefix + name] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


def check_layout(shapes: Shapes, expected: Shapes, optional_prefixes: Tuple[str, ...] = (),
                 what: str = "") -> None:
    """Every expected key present with its shape, none extra under the component's prefixes.
    ExportError names up to 4 keys at a time and the total. Values: shapes or (meta) tensors."""
    expected = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in expected.items()}
    missing = sorted(k for k in expected if k not in shapes and not k.startswith(optional_prefixes))
    if missing:
        raise ExportError("%smissing %d key(s): %s%s" % (what, len(missing), ", ".join(missing[:4]),
                                                          ", ..." if len(missing) > 4 else ""))
    bad = [(k, tuple(shapes[k]), tuple(expected[k])) for k in sorted(expected)
           if k in shapes and tuple(shapes[k]) != tuple(expected[k])]
    if bad:
        raise ExportError("%s%d tensor(s) with shapes that do not fit the architecture: %s%s" % (
            what, len(bad), ", ".join("%s is %s, expected %s" % b for b in bad[:3]), ", ..." if len(bad) > 3 else ""))


def unexpected_keys(shapes: Shapes, known: set, allowed: Optional[re.Pattern] = None) -> List[str]:
    """Keys that no component consumes and that are not LDM's usual extras (sorted)."""
    return sorted(k for k in shapes if k not in known and not IGNORED.match(k)
                  and not (allowed is not None and allowed.match(k)))
