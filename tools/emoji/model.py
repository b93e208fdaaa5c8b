"""The emoji model: an SD-style text-conditioned pixel UNet and a small text encoder.

UNet (Rombach et al. 2022, the LDM UNet; Ho et al. 2020 for the ResNet/time
embedding design), written in the block-wise form of fewstep's contract:

    emb = time_embed(timestep)                      # timestep [B] float -> [B, E]
    h = sample; skips = []
    for blk in input_blocks:  h = blk(h, emb, ctx); skips.append(h)
    h = middle_block(h, emb, ctx)
    for blk in output_blocks: h = blk(cat([h, skips.pop()], 1), emb, ctx)
    return out(h)

Every layer inside a block takes (h, emb, ctx) so that a block is a plain
sequence. All attention (UNet self/cross attention and the text encoder) goes
through `attention()`, which calls torch.nn.functional.scaled_dot_product_attention
without a mask; fewstep's runtime rewrites that op to its fused kernel.

Text encoder: token + position embeddings, pre-LN transformer layers
(Vaswani et al. 2017) with bidirectional attention over the fixed-length,
EOS-padded id sequence, final LayerNorm: forward(input_ids [B,L] int64) -> [B,L,D].
"""
import math
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

HEAD_DIM = 32


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1), no mask.
    q [B,Lq,C], k/v [B,Lk,C] float -> [B,Lq,C]; C = heads*d."""
    b, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads
    q = q.reshape(b, lq, heads, d).transpose(1, 2)
    k = k.reshape(b, lk, heads, d).transpose(1, 2)
    v = v.reshape(b, lk, heads, d).transpose(1, 2)
    pad = (8 - d % 8) % 8
    if pad > 0:
        # fewstep's fused kernel takes head dims that are multiples of 8: pad
        # q, k, v with zeros (q.k unchanged, the extra output columns are
        # dropped) and rescale q so that the op's default 1/sqrt(d + pad)
        # scale becomes 1/sqrt(d). Exact up to rounding.
        q = F.pad(q, [0, pad]) * math.sqrt((d + pad) / d)
        k = F.pad(k, [0, pad])
        v = F.pad(v, [0, pad])
    o = F.scaled_dot_product_attention(q, k, v)
    if pad > 0:
        o = o[..., :d]
    return o.transpose(1, 2).reshape(b, lq, c)


def norm(c: int) -> nn.GroupNorm:
    g = max(d for d in range(1, 33) if c % d == 0)
    return nn.GroupNorm(g, c, eps=1e-6)


class TimeEmbed(nn.Module):
    """Sinusoidal timestep features (Vaswani et al. 2017 / DDPM) + 2-layer MLP.
    timestep [B] float (0..999) -> [B, E]."""

    def __init__(self, c: int, e: int):
        super().__init__()
        self.c = c
        self.lin1 = nn.Linear(c, e)
        self.lin2 = nn.Linear(e, e)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        half = self.c // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32,
                                                            device=timestep.device) / half)
        args = timestep.float()[:, None] * freqs[None]
        feat = torch.cat([torch.cos(args), torch.sin(args)], dim=1).to(self.lin1.weight.dtype)
        return self.lin2(F.silu(self.lin1(feat)))


class Conv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, e: int):
        super().__init__()
        self.norm1 = norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(e, cout)
        self.norm2 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Transformer(nn.Module):
    """Spatial transformer: self-attention, cross-attention to ctx, MLP."""

    def __init__(self, c: int, d_ctx: int, ff_mult: int = 2):
        super().__init__()
        self.heads = max(1, c // HEAD_DIM)
        self.norm = norm(c)
        self.proj_in = nn.Linear(c, c)
        self.ln1 = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.o1 = nn.Linear(c, c)
        self.ln2 = nn.LayerNorm(c)
        self.q2 = nn.Linear(c, c, bias=False)
        self.kv2 = nn.Linear(d_ctx, 2 * c, bias=False)
        self.o2 = nn.Linear(c, c)
        self.ln3 = nn.LayerNorm(c)
        self.ff1 = nn.Linear(c, ff_mult * c)
        self.ff2 = nn.Linear(ff_mult * c, c)
        self.proj_out = nn.Linear(c, c)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)
        h = self.proj_in(h)
        q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
        h = h + self.o1(attention(q, k, v, self.heads))
        k2, v2 = self.kv2(ctx).chunk(2, dim=-1)
        h = h + self.o2(attention(self.q2(self.ln2(h)), k2, v2, self.heads))
        h = h + self.ff2(F.gelu(self.ff1(self.ln3(h))))
        h = self.proj_out(h).transpose(1, 2).reshape(b, c, hh, ww)
        return x + h


class Block(nn.Module):
    """A sequence of layers, each called as layer(h, emb, ctx)."""

    def __init__(self, layers: List[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, emb, ctx)
        return h


class Out(nn.Module):
    def __init__(self, c: int, cout: int):
        super().__init__()
        self.norm = norm(c)
        self.conv = nn.Conv2d(c, cout, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(h)))


class UNet(nn.Module):
    """Block-wise LDM UNet. sample [B,3,H,W] float, timestep [B] float,
    encoder_hidden_states [B,L,d_ctx] -> [B,3,H,W]. H, W multiples of 4."""

    def __init__(self, channels=(64, 128, 192), attn=(False, True, True), d_ctx=256,
                 in_channels=3, num_res_blocks=1):
        super().__init__()
        e = 4 * channels[0]
        self.time_embed = TimeEmbed(channels[0], e)
        inp: List[nn.Module] = [Block([Conv(in_channels, channels[0])])]
        skip_ch = [channels[0]]
        c = channels[0]
        for lvl, co in enumerate(channels):
            for _ in range(num_res_blocks):
                layers: List[nn.Module] = [ResBlock(c, co, e)]
                c = co
                if attn[lvl]:
                    layers.append(Transformer(c, d_ctx))
                inp.append(Block(layers))
                skip_ch.append(c)
            if lvl < len(channels) - 1:
                inp.append(Block([Downsample(c)]))
                skip_ch.append(c)
        self.input_blocks = nn.ModuleList(inp)
        self.middle_block = Block([ResBlock(c, c, e), Transformer(c, d_ctx), ResBlock(c, c, e)])
        outp: List[nn.Module] = []
        for lvl in reversed(range(len(channels))):
            co = channels[lvl]
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(c + skip_ch.pop(), co, e)]
                c = co
                if attn[lvl]:
                    layers.append(Transformer(c, d_ctx))
                if lvl > 0 and i == num_res_blocks:
                    layers.append(Upsample(c))
                outp.append(Block(layers))
        self.output_blocks = nn.ModuleList(outp)
        self.out = Out(c, in_channels)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep)
        h = sample
        skips: List[torch.Tensor] = []
        for blk in self.input_blocks:
            h = blk(h, emb, encoder_hidden_states)
            skips.append(h)
        h = self.middle_block(h, emb, encoder_hidden_states)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, skips.pop()], dim=1), emb, encoder_hidden_states)
        return self.out(h)


class TextLayer(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.heads = d // HEAD_DIM
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, 4 * d)
        self.ff2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        x = x + self.o(attention(q, k, v, self.heads))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class TextEncoder(nn.Module):
    """input_ids [B,L] int64 (L <= context_length) -> [B,L,D] float."""

    def __init__(self, vocab_size: int, context_length: int = 24, d: int = 256, layers: int = 3):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d)
        self.pos = nn.Parameter(torch.randn(context_length, d) * 0.01)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.layers = nn.ModuleList([TextLayer(d) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(input_ids) + self.pos[: input_ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.ln(x)


class EmojiModel(nn.Module):
    """Text encoder + UNet, trained together."""

    def __init__(self, vocab_size: int, context_length: int = 24, d_text: int = 256,
                 text_layers: int = 3, channels=(64, 128, 192), attn=(False, True, True)):
        super().__init__()
        self.text_encoder = TextEncoder(vocab_size, context_length, d_text, text_layers)
        self.unet = UNet(channels=channels, attn=attn, d_ctx=d_text)

    def forward(self, x, t, ids):
        return self.unet(x, t, self.text_encoder(ids))


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
