"""Block-wise LDM UNet (TorchScript) for fewstep packages, built from diffusers' UNet2DConditionModel.

The network is the latent-diffusion UNet (Rombach et al. 2022, Sec. 3.3 and App. G;
ResNet blocks and sinusoidal time embedding after Ho et al. 2020, transformer blocks
after Vaswani et al. 2017 with GEGLU feed-forward, Shazeer 2020), laid out as the
original LDM code lays it out, in fewstep's block-wise contract (README, "Model
packages"; BRIEF "Block-wise UNet"):

    emb = time_embed(timestep [B] f32, timestep_cond [B,D] or empty, added_cond [B,A] or empty)
    h = sample; skips = []
    for blk in input_blocks:  h = blk(h, emb, ctx); skips.append(h)
    h = middle_block(h, emb, ctx)
    for blk in output_blocks: h = blk(cat([h, skips.pop()], 1), emb, ctx)
    return out(h)

input_blocks.0 = [conv_in]; per level and per ResNet [ResBlock, SpatialTransformer?];
[Downsample] ending every level but the last; middle_block = [ResBlock,
SpatialTransformer, ResBlock]; output blocks per level layers_per_block + 1 of
[ResBlock, SpatialTransformer?, Upsample at the end of a level but the last].

Architectures: SD 1.x (conv proj_in/out, 8 heads), SD 2.x (linear proj_in/out, head
dim 64), SDXL (transformer depth per level, "text_time" addition embedding of the
pooled text embedding and six micro-conditioning sizes, Podell et al. 2023, Sec. 2.2)
and LCM UNets (a guidance embedding through `cond_proj`, Luo et al. 2023, Sec. 4.2).

Parameter names are the LDM checkpoint's (`model.diffusion_model.` stripped) except
where the contract nests them: `ldm_to_module_key` / `module_to_ldm_key` are the map.
"""
import math
import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from errors import ExportError

LDM_UNET_PREFIX = "model.diffusion_model."
SUPPORTED_DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
SUPPORTED_UP = ("CrossAttnUpBlock2D", "UpBlock2D")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1), no mask, via
    F.scaled_dot_product_attention so that fewstep's rewrite pass routes it to fewstep::attention.
    q [B,Lq,C], k/v [B,Lk,C], any float dtype -> [B,Lq,C]; C = heads * d."""
    b, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads
    q = q.reshape(b, lq, heads, d).transpose(1, 2)
    k = k.reshape(b, lk, heads, d).transpose(1, 2)
    v = v.reshape(b, lk, heads, d).transpose(1, 2)
    pad = (8 - d % 8) % 8
    if pad > 0:
        # fewstep's kernel takes head dims that are multiples of 8: zero columns leave q.k
        # unchanged and are dropped from the output; q is rescaled so that the op's default
        # 1/sqrt(d + pad) becomes 1/sqrt(d). Exact up to rounding (as tools/emoji/model.py).
        q = F.pad(q, [0, pad]) * math.sqrt((d + pad) / d)
        k = F.pad(k, [0, pad])
        v = F.pad(v, [0, pad])
    o = F.scaled_dot_product_attention(q, k, v)
    if pad > 0:
        o = o[..., :d]
    return o.transpose(1, 2).reshape(b, lq, c)


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t [N] (any dtype) -> [N, dim] float32, cos half first
    (Vaswani et al. 2017, Sec. 3.5; diffusers' get_timestep_embedding with flip_sin_to_cos=True,
    downscale_freq_shift=0, same operation order so that it matches to the last bit)."""
    half = dim // 2
    exponent = -math.log(10000.0) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    exponent = exponent / half
    args = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, [0, 1])
    return emb


class TimeEmbed(nn.Module):
    """timestep [B] float32 (0..999), timestep_cond [B, D] (LCM guidance embedding) or empty,
    added_cond [B, P + 6] = cat(pooled text [B, P], time_ids [B, 6] in pixels) (SDXL) or empty
    -> emb [B, E] in the module's dtype. An SDXL module raises when added_cond is empty."""

    def __init__(self, c0: int, e: int, cond_dim: int, add_in: int, pooled_dim: int, add_time_dim: int):
        super().__init__()
        self.c0 = c0
        self.cond_dim = cond_dim
        self.add_in = add_in
        self.pooled_dim = pooled_dim
        self.add_time_dim = add_time_dim
        self.mlp = nn.Sequential(nn.Linear(c0, e), nn.SiLU(), nn.Linear(e, e))
        self.cond_proj = nn.Linear(cond_dim, c0, bias=False) if cond_dim > 0 else nn.Identity()
        self.label_emb = (nn.Sequential(nn.Linear(add_in, e), nn.SiLU(), nn.Linear(e, e))
                          if add_in > 0 else nn.Identity())

    def forward(self, timestep: torch.Tensor, timestep_cond: torch.Tensor,
                added_cond: torch.Tensor) -> torch.Tensor:
        dtype = self.mlp[0].weight.dtype
        t_emb = sinusoid(timestep, self.c0).to(dtype)
        if self.cond_dim > 0 and timestep_cond.numel() > 0:
            t_emb = t_emb + self.cond_proj(timestep_cond.to(dtype))
        emb = self.mlp(t_emb)
        if self.add_in > 0:
            if added_cond.numel() == 0:
                raise RuntimeError("this UNet needs added_cond = cat([pooled text embeds, time_ids], 1)")
            text = added_cond[:, : self.pooled_dim]
            time_ids = added_cond[:, self.pooled_dim:]
            time_feat = sinusoid(time_ids.flatten(), self.add_time_dim).reshape(time_ids.shape[0], -1)
            add = torch.cat([text.float(), time_feat], dim=-1).to(dtype)
            emb = emb + self.label_emb(add)
        return emb


class ConvIn(nn.Conv2d):
    """The UNet's first 3x3 convolution as a block layer: (x [B,Cin,H,W], emb, ctx) -> [B,C0,H,W]."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias)


class ResBlock(nn.Module):
    """LDM ResBlock (Ho et al. 2020, App. B): GroupNorm-SiLU-conv, + Linear(SiLU(emb)),
    GroupNorm-SiLU-conv, plus a 1x1 skip when the width changes. x [B,Cin,H,W] -> [B,Cout,H,W]."""

    def __init__(self, cin: int, cout: int, e: int, groups: int, eps: float):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, cin, eps=eps), nn.SiLU(),
                                       nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(e, cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, cout, eps=eps), nn.SiLU(), nn.Identity(),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class Attention(nn.Module):
    """Multi-head attention with LDM's names: x [B,L,C], ctx [B,Lc,Cc] -> [B,L,C]."""

    def __init__(self, dim: int, ctx_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Identity())

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.to_out(attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


class GEGLU(nn.Module):
    """GEGLU (Shazeer 2020, eq. 6): x [.., C] -> a * gelu(b) with [a, b] = proj(x), [.., inner]."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU MLP with LDM's names (net.0.proj, net.2), inner width 4C: x [B,L,C] -> [B,L,C]."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-LN block: self-attention, cross-attention to ctx, GEGLU MLP. x [B,L,C] -> [B,L,C]."""

    def __init__(self, dim: int, ctx_dim: int, heads: int):
        super().__init__()
        self.attn1 = Attention(dim, dim, heads)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, ctx_dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        n = self.norm1(x)
        x = self.attn1(n, n) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """LDM SpatialTransformer: GroupNorm, proj_in (1x1 conv, or Linear for SD 2.x/SDXL), `depth`
    transformer blocks over the H*W tokens, proj_out, residual. x [B,C,H,W], ctx [B,L,Cc] -> [B,C,H,W]."""

    __constants__ = ["use_linear"]

    def __init__(self, c: int, ctx_dim: int, heads: int, depth: int, groups: int, use_linear: bool):
        super().__init__()
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.proj_in = nn.Linear(c, c) if use_linear else nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(c, ctx_dim, heads) for _ in range(depth)])
        self.proj_out = nn.Linear(c, c) if use_linear else nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        if self.use_linear:
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(b, hh * ww, c))
        else:
            h = self.proj_in(h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        for blk in self.transformer_blocks:
            h = blk(h, ctx)
        if self.use_linear:
            h = self.proj_out(h).reshape(b, hh, ww, c).permute(0, 3, 1, 2).contiguous()
        else:
            h = self.proj_out(h.reshape(b, hh, ww, c).permute(0, 3, 1, 2).contiguous())
        return h + x


class Downsample(nn.Module):
    """3x3 stride-2 convolution: [B,C,H,W] -> [B,C,H/2,W/2]."""

    def __init__(self, c: int):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 convolution: [B,C,H,W] -> [B,C,2H,2W]."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    """A sequence of layers, each called as layer(h, emb, ctx) -> h (the contract's `layers`)."""

    def __init__(self, layers: List[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, emb, ctx)
        return h


def _per_level(value, n: int, name: str) -> List[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ExportError("unet config: %s has %d entries for %d levels" % (name, len(value), n))
        return [int(v) for v in value]
    return [int(value)] * n


def unet_spec(config) -> dict:
    """Reads a diffusers UNet2DConditionModel config (dict; diffusers' defaults for absent keys)
    into the numbers this module needs; ExportError (one line) for what it does not support."""
    c = dict(config)
    get = c.get
    fixed = [  # diffusers options with the value the LDM UNet has; other values are not exported
        ("class_embed_type", None), ("num_class_embeds", None), ("encoder_hid_dim", None),
        ("encoder_hid_dim_type", None), ("time_embedding_type", "positional"),
        ("time_embedding_act_fn", None), ("timestep_post_act", None), ("act_fn", "silu"),
        ("resnet_time_scale_shift", "default"), ("mid_block_type", "UNetMidBlock2DCrossAttn"),
        ("flip_sin_to_cos", True), ("freq_shift", 0), ("conv_in_kernel", 3), ("conv_out_kernel", 3),
        ("center_input_sample", False), ("dual_cross_attention", False), ("only_cross_attention", False),
        ("reverse_transformer_layers_per_block", None), ("cross_attention_norm", None),
        ("attention_type", "default"), ("class_embeddings_concat", False), ("resnet_skip_time_act", False),
        ("resnet_out_scale_factor", 1.0), ("mid_block_scale_factor", 1), ("downsample_padding", 1),
        ("mid_block_only_cross_attention", None),
    ]
    for key, default in fixed:
        v = get(key, default)
        if v != default and not (isinstance(v, (list, tuple)) and all(x == default for x in v)):
            raise ExportError("unet config: %s = %r is not supported (fewstep exports %r)" % (key, v, default))
    if get("addition_embed_type") not in (None, "text_time"):
        raise ExportError("unet config: addition_embed_type %r is not supported (only \"text_time\")"
                          % get("addition_embed_type"))
    channels = [int(x) for x in get("block_out_channels", (320, 640, 1280, 1280))]
    n = len(channels)
    down = list(get("down_block_types", ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]))
    up = list(get("up_block_types", ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3))
    for t in down:
        if t not in SUPPORTED_DOWN:
            raise ExportError("unet config: down block type %s is not supported" % t)
    for t in up:
        if t not in SUPPORTED_UP:
            raise ExportError("unet config: up block type %s is not supported" % t)
    if len(down) != n or len(up) != n:
        raise ExportError("unet config: %d levels but %d down and %d up block types" % (n, len(down), len(up)))
    lpb = _per_level(get("layers_per_block", 2), n, "layers_per_block")
    if len(set(lpb)) != 1:
        raise ExportError("unet config: layers_per_block must be the same at every level")
    heads_cfg = get("num_attention_heads") or get("attention_head_dim", 8)
    heads = _per_level(heads_cfg, n, "attention_head_dim")
    depth = _per_level(get("transformer_layers_per_block", 1), n, "transformer_layers_per_block")
    ctx_dim = get("cross_attention_dim", 1280)
    if isinstance(ctx_dim, (list, tuple)):
        if len(set(ctx_dim)) != 1:
            raise ExportError("unet config: a cross_attention_dim per level is not supported")
        ctx_dim = ctx_dim[0]
    for lvl, (ch, hd) in enumerate(zip(channels, heads)):
        if ch % hd != 0:
            raise ExportError("unet config: %d channels at level %d do not split into %d heads" % (ch, lvl, hd))
    add_type = get("addition_embed_type")
    add_in = 0
    pooled = 0
    add_time = 0
    if add_type == "text_time":
        add_in = int(get("projection_class_embeddings_input_dim"))
        add_time = int(get("addition_time_embed_dim"))
        pooled = add_in - 6 * add_time
        if pooled <= 0:
            raise ExportError("unet config: projection_class_embeddings_input_dim %d leaves no room for the "
                              "pooled text embedding next to 6 time ids of %d" % (add_in, add_time))
    groups = int(get("norm_num_groups", 32))
    for ch in channels:
        if ch % groups != 0:
            raise ExportError("unet config: %d channels do not split into %d norm groups" % (ch, groups))
    if get("time_embedding_dim") not in (None, 4 * channels[0]):
        raise ExportError("unet config: time_embedding_dim %r is not supported (fewstep exports 4 x %d)"
                          % (get("time_embedding_dim"), channels[0]))
    return {
        "channels": channels, "layers_per_block": lpb[0], "heads": heads, "depth": depth,
        "attn_down": [t == "CrossAttnDownBlock2D" for t in down],
        "attn_up": [t == "CrossAttnUpBlock2D" for t in up],
        "ctx_dim": int(ctx_dim), "in_channels": int(get("in_channels", 4)),
        "out_channels": int(get("out_channels", 4)), "groups": groups, "eps": float(get("norm_eps", 1e-5)),
        "linear": bool(get("use_linear_projection", False)),
        "cond_dim": int(get("time_cond_proj_dim") or 0), "add_in": add_in, "pooled_dim": pooled,
        "add_time_dim": add_time,
    }


class UNet(nn.Module):
    """Block-wise LDM UNet (see the module docstring) from a diffusers UNet2DConditionModel config.

    forward(sample [B,Cin,H,W], timestep [B] f32, encoder_hidden_states [B,L,ctx_dim],
    timestep_cond [B,D] or None, added_cond [B,A] or None) -> [B,Cout,H,W], the monolithic
    convenience form of the same computation; H, W multiples of 2**(levels-1).
    Raises ExportError for configs it does not support."""

    def __init__(self, config):
        super().__init__()
        s = unet_spec(config)
        ch = s["channels"]
        g, eps, e = s["groups"], s["eps"], 4 * ch[0]
        self.time_embed = TimeEmbed(ch[0], e, s["cond_dim"], s["add_in"], s["pooled_dim"], s["add_time_dim"])

        def transformer(c: int, lvl: int, depth: int) -> nn.Module:
            return SpatialTransformer(c, s["ctx_dim"], s["heads"][lvl], depth, g, s["linear"])

        inp: List[nn.Module] = [Block([ConvIn(s["in_channels"], ch[0], 3, padding=1)])]
        skip_ch = [ch[0]]
        c = ch[0]
        for lvl, co in enumerate(ch):
            for _ in range(s["layers_per_block"]):
                layers: List[nn.Module] = [ResBlock(c, co, e, g, eps)]
                c = co
                if s["attn_down"][lvl]:
                    layers.append(transformer(c, lvl, s["depth"][lvl]))
                inp.append(Block(layers))
                skip_ch.append(c)
            if lvl < len(ch) - 1:
                inp.append(Block([Downsample(c)]))
                skip_ch.append(c)
        self.input_blocks = nn.ModuleList(inp)
        self.middle_block = Block([ResBlock(c, c, e, g, eps), transformer(c, len(ch) - 1, s["depth"][-1]),
                                   ResBlock(c, c, e, g, eps)])
        outp: List[nn.Module] = []
        for i, lvl in enumerate(reversed(range(len(ch)))):
            co = ch[lvl]
            for j in range(s["layers_per_block"] + 1):
                layers = [ResBlock(c + skip_ch.pop(), co, e, g, eps)]
                c = co
                if s["attn_up"][i]:
                    layers.append(transformer(c, lvl, s["depth"][lvl]))
                if lvl > 0 and j == s["layers_per_block"]:
                    layers.append(Upsample(c))
                outp.append(Block(layers))
        self.output_blocks = nn.ModuleList(outp)
        self.out = nn.Sequential(nn.GroupNorm(g, c, eps=eps), nn.SiLU(), nn.Conv2d(c, s["out_channels"], 3, padding=1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                timestep_cond: Optional[torch.Tensor] = None,
                added_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        empty = torch.zeros(0, device=sample.device)
        emb = self.time_embed(timestep, timestep_cond if timestep_cond is not None else empty,
                              added_cond if added_cond is not None else empty)
        h = sample
        skips: List[torch.Tensor] = []
        for blk in self.input_blocks:
            h = blk(h, emb, encoder_hidden_states)
            skips.append(h)
        h = self.middle_block(h, emb, encoder_hidden_states)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, skips.pop()], dim=1), emb, encoder_hidden_states)
        return self.out(h)


def run_blockwise(m, sample: torch.Tensor, timestep: torch.Tensor, ctx: torch.Tensor,
                  timestep_cond: Optional[torch.Tensor] = None,
                  added_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Runs fewstep's block-wise contract on a UNet (eager, scripted or torch.jit.load-ed), looking
    the blocks up by name as the runtime does. Shapes as UNet.forward."""
    empty = torch.zeros(0)
    emb = m.time_embed(timestep, empty if timestep_cond is None else timestep_cond,
                       empty if added_cond is None else added_cond)
    h = sample
    skips: List[torch.Tensor] = []
    for blk in m.input_blocks.children():
        h = blk(h, emb, ctx)
        skips.append(h)
    h = m.middle_block(h, emb, ctx)
    for blk in m.output_blocks.children():
        h = blk(torch.cat([h, skips.pop()], 1), emb, ctx)
    return m.out(h)


def example_inputs(config, batch: int, height: int, width: int, generator: torch.Generator, ctx_len: int = 7):
    """Random float32 inputs for comparing with diffusers: ((sample [B,Cin,H,W], timestep [B] in
    [0, 999), ctx [B,ctx_len,ctx_dim], timestep_cond [B,D] or None, added_cond [B,P+6] or None),
    the same as UNet2DConditionModel's keyword arguments). time_ids are (8H, 8W, 0, 0, 8H, 8W) px."""
    s = unet_spec(config)
    g = generator
    x = torch.randn(batch, s["in_channels"], height, width, generator=g)
    t = torch.rand(batch, generator=g) * 999
    ctx = torch.randn(batch, ctx_len, s["ctx_dim"], generator=g)
    tc: Optional[torch.Tensor] = None
    ac: Optional[torch.Tensor] = None
    kwargs = {}
    if s["cond_dim"]:
        tc = torch.randn(batch, s["cond_dim"], generator=g)
        kwargs["timestep_cond"] = tc
    if s["add_in"]:
        pooled = torch.randn(batch, s["pooled_dim"], generator=g)
        ids = torch.tensor([[8.0 * height, 8.0 * width, 0.0, 0.0, 8.0 * height, 8.0 * width]] * batch)
        kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": ids}
        ac = torch.cat([pooled, ids], 1)
    return (x, t, ctx, tc, ac), kwargs


# LDM checkpoint key (without "model.diffusion_model.") -> this module's key. The contract
# nests every block's layers under `layers` and the time/label embeddings under time_embed.
_LDM_TO_MODULE = [
    (re.compile(r"^(input_blocks|output_blocks)\.(\d+)\.(\d+)\."), r"\1.\2.layers.\3."),
    (re.compile(r"^middle_block\.(\d+)\."), r"middle_block.layers.\1."),
    (re.compile(r"^time_embed\.(\d+)\."), r"time_embed.mlp.\1."),
    (re.compile(r"^label_emb\.0\.(\d+)\."), r"time_embed.label_emb.\1."),
]
_MODULE_TO_LDM = [
    (re.compile(r"^(input_blocks|output_blocks)\.(\d+)\.layers\.(\d+)\."), r"\1.\2.\3."),
    (re.compile(r"^middle_block\.layers\.(\d+)\."), r"middle_block.\1."),
    (re.compile(r"^time_embed\.mlp\.(\d+)\."), r"time_embed.\1."),
    (re.compile(r"^time_embed\.label_emb\.(\d+)\."), r"label_emb.0.\1."),
]
# The LCM guidance projection has no LDM name; it keeps diffusers' (time_embedding.cond_proj).
COND_PROJ_KEY = "time_embed.cond_proj.weight"


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        new, count = pattern.subn(repl, key, count=1)
        if count:
            return new
    return key


def ldm_to_module_key(key: str) -> str:
    """'input_blocks.1.0.in_layers.0.weight' (LDM, prefix stripped) -> 'input_blocks.1.layers.0.in_layers.0.weight'."""
    return _rename(key, _LDM_TO_MODULE)


def module_to_ldm_key(key: str) -> Optional[str]:
    """Inverse of ldm_to_module_key; None for the LCM cond_proj, which the LDM layout lacks."""
    return None if key == COND_PROJ_KEY else _rename(key, _MODULE_TO_LDM)


def ldm_layout(config) -> Dict[str, torch.Size]:
    """The LDM checkpoint layout of this config: {'model.diffusion_model.<key>': shape}, built on the
    meta device (no weights). LCM's cond_proj is not part of it."""
    with torch.device("meta"):
        m = UNet(config)
    return {LDM_UNET_PREFIX + module_to_ldm_key(k): v.shape for k, v in m.state_dict().items()
            if k != COND_PROJ_KEY}


def diffusers_key_map(config) -> Dict[str, str]:
    """{diffusers UNet2DConditionModel key: this module's key}, one to one. Built by running
    diffusers' own LDM converter (convert_ldm_unet_checkpoint) over this module's LDM names."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    names = {k: k for k in ldm_layout(config)}
    converted = convert_ldm_unet_checkpoint(names, dict(config))
    out = {dk: ldm_to_module_key(ldm[len(LDM_UNET_PREFIX):]) for dk, ldm in converted.items()}
    if unet_spec(config)["cond_dim"] > 0:
        out["time_embedding.cond_proj.weight"] = COND_PROJ_KEY
    return out


def from_diffusers(model) -> UNet:
    """UNet2DConditionModel (any width/depth of the supported families) -> UNet holding the same
    weight tensors (shared, same dtype), in eval mode. ExportError when the config is not supported or the
    key map is not one to one."""
    config = dict(model.config)
    with torch.device("meta"):
        unet = UNet(config)
    kmap = diffusers_key_map(config)
    src = model.state_dict()
    left = sorted(set(src) - set(kmap))
    lacking = sorted(set(kmap) - set(src))
    if left or lacking:
        raise ExportError("UNet key map is not one to one: diffusers keys without a place %s, places without "
                          "a key %s" % (left[:4], lacking[:4]))
    mine = {kmap[k]: v for k, v in src.items()}
    own = unet.state_dict()
    for k, v in mine.items():
        if own[k].shape != v.shape:
            raise ExportError("UNet %s: shape %s does not fit %s" % (k, tuple(v.shape), tuple(own[k].shape)))
    unet.load_state_dict(mine, strict=True, assign=True)  # shares the tensors: no second copy
    return unet.eval()


def manifest_entry(config, file: str = "unet.pt") -> dict:
    """The manifest's `unet` object for this config (README "Model packages" + BRIEF additions)."""
    s = unet_spec(config)
    entry = {"file": file, "form": "blocks", "downsample_factor": 2 ** (len(s["channels"]) - 1)}
    if s["cond_dim"] > 0:
        entry["time_cond_proj_dim"] = s["cond_dim"]
    if s["add_in"] > 0:
        entry["addition_embed_type"] = "text_time"
        entry["addition_time_embed_dim"] = s["add_time_dim"]
        entry["pooled_size"] = s["pooled_dim"]
    entry["cross_attention_dim"] = s["ctx_dim"]
    return entry
