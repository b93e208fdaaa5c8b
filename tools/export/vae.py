"""The Stable Diffusion VAE decoder (post_quant_conv + decoder) as a TorchScript-able module.

The autoencoder of Rombach et al. 2022 ("High-Resolution Image Synthesis with
Latent Diffusion Models", Sec. 3 and Appendix G): a KL-regularised
autoencoder whose decoder is

    z -> post_quant_conv (1x1) -> conv_in -> mid (ResNet, self-attention, ResNet)
      -> up blocks (layers_per_block+1 ResNets each, nearest-2x + conv between levels)
      -> GroupNorm -> SiLU -> conv_out -> image [B, 3, 8h, 8w] (nominally in [-1, 1])

with ResNet blocks x + conv2(SiLU(GN(conv1(SiLU(GN x))))) (He et al. 2016; a 1x1
conv_shortcut where the width changes) and single-head spatial self-attention
over the h*w positions (Vaswani et al. 2017, eq. 1). Module and parameter names
follow diffusers' AutoencoderKL, so from_diffusers is a state-dict copy.

forward(latents [B, C, h, w] float) -> image [B, 3, 8h, 8w] for the SD VAE (the
upsampling factor is 2^(levels-1)). fewstep's runtime divides by the manifest's
scaling_factor before calling; the module itself applies no scaling and no clamp,
as diffusers' `vae.decode(z).sample`.

The mid-block attention calls F.scaled_dot_product_attention without a mask.
Its head dim is the mid width (512 for SD's VAE), above fewstep::attention's
maximum of 256: the runtime must not route the VAE through its attention rewrite
(today pipeline/model_source.cpp does not).
"""
from __future__ import annotations

import contextlib
import re
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from .errors import ExportError
except ImportError:  # run as a plain module from tools/export/
    from errors import ExportError

# diffusers' AutoencoderKL config keys the module reads.
CONFIG_KEYS = ("latent_channels", "out_channels", "block_out_channels", "layers_per_block", "norm_num_groups")

LDM_PREFIX = "first_stage_model."


class ResnetBlock(nn.Module):
    """x [B, Cin, H, W] -> shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1 x))))) [B, Cout, H, W]."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.conv_shortcut(x) + h


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over positions with a GroupNorm in front and a residual.
    x [B, C, H, W] -> x + to_out(attn(q, k, v)) [B, C, H, W]; q, k, v = Linear(GN(x)) per position."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.to_q = nn.Linear(c, c)
        self.to_k = nn.Linear(c, c)
        self.to_v = nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        h = self.group_norm(x).reshape(b, c, hgt * wid).transpose(1, 2)  # [B, HW, C]
        q = self.to_q(h).unsqueeze(1)  # [B, 1, HW, C]: one head of width C
        k = self.to_k(h).unsqueeze(1)
        v = self.to_v(h).unsqueeze(1)
        o = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        for proj in self.to_out:
            o = proj(o)
        return x + o.transpose(1, 2).reshape(b, c, hgt, wid)


class MidBlock(nn.Module):
    """resnets[0] -> attentions[0] (if any) -> resnets[1]; [B, C, H, W] -> same."""

    def __init__(self, c: int, groups: int, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(c, c, groups), ResnetBlock(c, c, groups)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(c, groups)] if attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x then a 3x3 conv: [B, C, H, W] -> [B, C, 2H, 2W]."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpBlock(nn.Module):
    """ResNets (cin -> cout, then cout -> cout) and an optional Upsample."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample(cout)] if upsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for up in self.upsamplers:
            x = up(x)
        return x


class Decoder(nn.Module):
    """conv_in -> mid_block -> up_blocks -> conv_norm_out -> SiLU -> conv_out."""

    def __init__(self, latent: int, out: int, widths: List[int], layers_per_block: int, groups: int,
                 mid_attention: bool):
        super().__init__()
        rev = list(reversed(widths))
        self.conv_in = nn.Conv2d(latent, rev[0], 3, padding=1)
        self.mid_block = MidBlock(rev[0], groups, mid_attention)
        blocks = []
        prev = rev[0]
        for i, width in enumerate(rev):
            blocks.append(UpBlock(prev, width, layers_per_block + 1, groups, i < len(rev) - 1))
            prev = width
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(groups, widths[0], eps=1e-6)
        self.conv_out = nn.Conv2d(widths[0], out, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class VaeDecoder(nn.Module):
    """post_quant_conv + Decoder. forward(latents [B, C, h, w]) -> image [B, 3, f*h, f*w],
    f = 2^(len(block_out_channels)-1), in the weights' dtype (latents cast to it)."""

    def __init__(self, cfg: Dict):
        super().__init__()
        latent = int(cfg["latent_channels"])
        widths = [int(c) for c in cfg["block_out_channels"]]
        self.post_quant_conv = nn.Conv2d(latent, latent, 1) if cfg.get("use_post_quant_conv", True) else nn.Identity()
        self.decoder = Decoder(latent, int(cfg["out_channels"]), widths, int(cfg["layers_per_block"]),
                               int(cfg["norm_num_groups"]), bool(cfg.get("mid_block_add_attention", True)))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latents))


def build(cfg: Dict, device: Optional[torch.device] = None) -> nn.Module:
    """A VAE decoder from a diffusers AutoencoderKL-style config dict (CONFIG_KEYS, plus optional
    use_post_quant_conv, mid_block_add_attention, up_block_types, act_fn, norm_type), with
    PyTorch's default random init on `device` ("meta" counts parameters without memory).
    Needs only torch. Raises ExportError for a config this module does not implement."""
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing:
        raise ExportError(f"vae config: missing {', '.join(missing)}")
    ups = cfg.get("up_block_types") or ["UpDecoderBlock2D"] * len(cfg["block_out_channels"])
    if any(t != "UpDecoderBlock2D" for t in ups) or len(ups) != len(cfg["block_out_channels"]):
        raise ExportError(f"vae config: up_block_types {list(ups)} not supported (UpDecoderBlock2D per level)")
    if cfg.get("act_fn", "silu") != "silu" or cfg.get("norm_type", "group") != "group":
        raise ExportError("vae config: only act_fn 'silu' with norm_type 'group' is supported")
    groups = int(cfg["norm_num_groups"])
    bad = [c for c in cfg["block_out_channels"] if int(c) % groups != 0]
    if bad:
        raise ExportError(f"vae config: block_out_channels {bad} not divisible by norm_num_groups {groups}")
    ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with ctx:
        module = VaeDecoder(dict(cfg))
    return module.eval()


def from_diffusers(autoencoder_kl: nn.Module) -> nn.Module:
    """fewstep's decoder from diffusers' AutoencoderKL (any width and depth of that class).

    The result's parameters share storage with the source (no copy). Its forward gives
    `autoencoder_kl.decode(z).sample` (without tiling or slicing) to fp32 rounding.
    Raises ExportError when the config is not supported or tensors are missing.
    """
    cfg = dict(autoencoder_kl.config)
    module = build(cfg, device="meta")
    src = {k: v for k, v in autoencoder_kl.state_dict().items()
           if k.startswith(("decoder.", "post_quant_conv."))}
    wanted = module.state_dict().keys()
    missing = sorted(set(wanted) - set(src))
    extra = sorted(set(src) - set(wanted))
    if missing or extra:
        raise ExportError(f"vae: decoder tensors do not match (missing {missing[:4]}, unexpected {extra[:4]})")
    module.load_state_dict(src, strict=True, assign=True)
    return module.eval()


_LDM_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
               "nin_shortcut": "conv_shortcut"}
_LDM_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def ldm_key_map(ldm_keys: Iterable[str], prefix: str = LDM_PREFIX) -> Tuple[Dict[str, str], List[str], List[str]]:
    """Maps the VAE keys of an original LDM single-file checkpoint onto VaeDecoder's keys.

    ldm_keys: the checkpoint's keys (those not under `prefix` are ignored).
    Returns (mapping ldm_key -> module_key for post_quant_conv and decoder, dropped keys
    (encoder.* and quant_conv.*, which a text-to-image package does not use),
    unknown keys under `prefix`). LDM's `up.i` is diffusers' `up_blocks.(n-1-i)`, n the
    number of levels. The attention's q/k/v/proj_out are 1x1 convs [C, C, 1, 1] in LDM
    and Linear [C, C] here: convert_ldm_state_dict reshapes them.
    """
    keys = [k[len(prefix):] for k in ldm_keys if k.startswith(prefix)]
    levels = 1 + max([int(m.group(1)) for k in keys for m in [re.match(r"decoder\.up\.(\d+)\.", k)] if m],
                     default=-1)
    mapping, dropped, unknown = {}, [], []
    for key in keys:
        full = prefix + key
        if key.startswith(("encoder.", "quant_conv.")):
            dropped.append(full)
            continue
        target = _ldm_vae_target(key, levels)
        if target is None:
            unknown.append(full)
        else:
            mapping[full] = target
    return mapping, dropped, unknown


def _ldm_vae_target(key: str, levels: int) -> Optional[str]:
    """The module key of one LDM VAE key without prefix, or None when it is not a decoder key."""
    if key.startswith("post_quant_conv."):
        return key
    m = re.fullmatch(r"decoder\.(conv_in|conv_out|norm_out)\.(weight|bias)", key)
    if m:
        return f"decoder.{'conv_norm_out' if m.group(1) == 'norm_out' else m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"decoder\.mid\.block_([12])\.(\w+)\.(weight|bias)", key)
    if m and m.group(2) in _LDM_RESNET:
        return f"decoder.mid_block.resnets.{int(m.group(1)) - 1}.{_LDM_RESNET[m.group(2)]}.{m.group(3)}"
    m = re.fullmatch(r"decoder\.mid\.attn_1\.(\w+)\.(weight|bias)", key)
    if m and m.group(1) in _LDM_ATTN:
        return f"decoder.mid_block.attentions.0.{_LDM_ATTN[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)", key)
    if m and m.group(3) in _LDM_RESNET:
        level = levels - 1 - int(m.group(1))
        return f"decoder.up_blocks.{level}.resnets.{m.group(2)}.{_LDM_RESNET[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.up_blocks.{levels - 1 - int(m.group(1))}.upsamplers.0.conv.{m.group(2)}"
    return None


def convert_ldm_state_dict(ldm_state: Dict[str, torch.Tensor], prefix: str = LDM_PREFIX) -> Dict[str, torch.Tensor]:
    """VaeDecoder's state dict from an LDM checkpoint's tensors (see ldm_key_map); attention
    1x1-conv weights [C, C, 1, 1] become Linear weights [C, C]. Raises ExportError listing a
    few keys when some under `prefix` are not VAE keys."""
    mapping, _, unknown = ldm_key_map(ldm_state.keys(), prefix)
    if unknown:
        raise ExportError(f"vae: {len(unknown)} unexpected keys, e.g. {', '.join(unknown[:4])}")
    out = {}
    for src, dst in mapping.items():
        t = ldm_state[src]
        if ".attentions.0.to_" in dst and dst.endswith(".weight") and t.dim() == 4:
            t = t.reshape(t.shape[0], t.shape[1])
        out[dst] = t
    return out
