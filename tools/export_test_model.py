#!/usr/bin/env python3
"""Export tiny randomly initialised fewstep model packages for tests.

Writes, under OUT_DIR:
  tiny-blocks/   pixel model, 3x16x16, block-wise UNet contract
  tiny-mono/     the same weights, monolithic contract
  tiny-latent/   latent model (4x8x8 latents, VAE decoder x2 -> 16x16 RGB), monolithic
  tiny-uncond/   unconditional pixel model (text_encoder null), monolithic
  tiny-sdxl/     SDXL-like: two text encoders (the second returns (hidden, pooled),
                 tokenizer_2 pads with 0), time_embed(t, timestep_cond, added_cond)
                 using added_cond = cat(pooled, time_ids), force_zeros_for_empty_prompt
  tiny-sdxl-mono/ the same UNet file through its monolithic forward (paths ../tiny-sdxl/...)
  tiny-lcm/      LCM-like: guidance "embedded", timestep_cond of width 8 through
                 cond_proj; text encoder and tokenizer shared from ../tiny-blocks
  tiny-turbo/    manifest only: tiny-blocks' files, guidance "none", trailing spacing
  probe-sdxl/    a UNet whose output is its inputs (probe.pt): t, timestep_cond,
  probe-lcm/     added_cond and the context, written into the image; prediction_type
                 "sample", so one DDIM step returns them (tests read them back)
  broken/        TorchScript files to refuse: unknown_op.pt, newer_version.pt

The UNet follows the LDM layout (Rombach et al. 2022, Sec. 3.3 and App. G):
time embedding, input blocks of ResNet + transformer blocks (self- and
cross-attention), a middle block, output blocks fed by a skip stack, and an
output head. Attention calls torch's scaled_dot_product_attention so that the
runtime's rewrite pass can route it to fewstep's fused op.

The tokenizer is CLIP's byte-level format with no merges (the 256 byte
symbols, the same with </w>, then <|startoftext|> and <|endoftext|>), so the
package needs no external data.

Usage: export_test_model.py OUT_DIR
"""
import json
import math
import os
import shutil
import sys
import zipfile
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "emoji"))
from bpe import bytes_to_unicode  # noqa: E402  (CLIP's byte table, shared with the emoji tokenizer)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of float timesteps [B] -> [B, dim] (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :].to(t.device)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimeEmbed(nn.Module):
    def __init__(self, ch: int, emb: int):
        super().__init__()
        self.ch = ch
        self.lin1 = nn.Linear(ch, emb)
        self.lin2 = nn.Linear(emb, emb)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.silu(self.lin1(timestep_embedding(t, self.ch).to(self.lin1.weight.dtype))))


class TimeEmbed3(nn.Module):
    """The three-argument contract: timestep [B], timestep_cond [B, D] or empty,
    added_cond [B, P + 6] or empty -> emb [B, E]. As diffusers' UNet2DConditionModel:
    cond_proj(timestep_cond) is added to the sinusoidal features before lin1 (LCM);
    added_cond = cat(pooled, time_ids), each time id projected sinusoidally
    (add_dim per id), goes through add_embedding and is added to emb (SDXL)."""

    def __init__(self, ch: int, emb: int, cond_dim: int, pooled_dim: int, add_dim: int):
        super().__init__()
        self.ch = ch
        self.cond_dim = cond_dim
        self.pooled_dim = pooled_dim
        self.add_dim = add_dim
        self.lin1 = nn.Linear(ch, emb)
        self.lin2 = nn.Linear(emb, emb)
        self.cond_proj = nn.Linear(max(cond_dim, 1), ch, bias=False)
        add_in = pooled_dim + 6 * add_dim if pooled_dim > 0 else 1
        self.add1 = nn.Linear(add_in, emb)
        self.add2 = nn.Linear(emb, emb)

    def forward(self, t: torch.Tensor, timestep_cond: torch.Tensor, added_cond: torch.Tensor) -> torch.Tensor:
        dtype = self.lin1.weight.dtype
        x = timestep_embedding(t, self.ch).to(dtype)
        if self.cond_dim > 0 and timestep_cond.numel() > 0:
            x = x + self.cond_proj(timestep_cond.to(dtype))
        emb = self.lin2(F.silu(self.lin1(x)))
        if self.pooled_dim > 0:
            if added_cond.numel() == 0:
                raise RuntimeError("this UNet needs added_cond = cat([pooled text embeds, time_ids], 1)")
            pooled = added_cond[:, : self.pooled_dim]
            ids = added_cond[:, self.pooled_dim:].reshape(-1)
            ids_emb = timestep_embedding(ids, self.add_dim).reshape(added_cond.shape[0], 6 * self.add_dim)
            aug = torch.cat([pooled, ids_emb], dim=1).to(dtype)
            emb = emb + self.add2(F.silu(self.add1(aug)))
        return emb


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(4, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(4, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.silu(self.norm1(h)))
        x = x + self.emb(F.silu(emb))[:, :, None, None]
        x = self.conv2(F.silu(self.norm2(x)))
        return self.skip(h) + x


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The single attention entry point: [B, H, S, d] each -> [B, H, Sq, d]."""
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    def __init__(self, dim: int, ctx_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(ctx_dim, dim, bias=False)
        self.v = nn.Linear(ctx_dim, dim, bias=False)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, c // h).transpose(1, 2)
        k = self.k(ctx).view(b, ctx.shape[1], h, c // h).transpose(1, 2)
        v = self.v(ctx).view(b, ctx.shape[1], h, c // h).transpose(1, 2)
        out = attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.o(out)


class Transformer(nn.Module):
    """Spatial transformer: self-attention, cross-attention to ctx, feed-forward."""

    def __init__(self, dim: int, ctx_dim: int, heads: int):
        super().__init__()
        self.norm = nn.GroupNorm(4, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, ctx_dim, heads) if ctx_dim > 0 else None
        self.ln3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        x = self.norm(h).flatten(2).transpose(1, 2)
        y = self.ln1(x)
        x = x + self.attn1(y, y)
        if self.attn2 is not None:
            x = x + self.attn2(self.ln2(x), ctx)
        x = x + self.ff(self.ln3(x))
        return h + x.transpose(1, 2).reshape(b, c, hh, ww)


class ConvIn(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv(h)


class Down(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv(h)


class ResAttn(nn.Module):
    """ResBlock, optionally followed by an upsample."""

    def __init__(self, cin: int, cout: int, emb: int, ctx_dim: int, heads: int, up: bool):
        super().__init__()
        self.res = ResBlock(cin, cout, emb)
        self.tf = Transformer(cout, ctx_dim, heads)
        self.up = nn.Conv2d(cout, cout, 3, padding=1) if up else None

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.tf(self.res(h, emb), ctx)
        if self.up is not None:
            h = self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h


class Middle(nn.Module):
    def __init__(self, ch: int, emb: int, ctx_dim: int, heads: int):
        super().__init__()
        self.res1 = ResBlock(ch, ch, emb)
        self.tf = Transformer(ch, ctx_dim, heads)
        self.res2 = ResBlock(ch, ch, emb)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.res2(self.tf(self.res1(h, emb), ctx), emb)


class Out(nn.Module):
    def __init__(self, ch: int, cout: int):
        super().__init__()
        self.norm = nn.GroupNorm(4, ch)
        self.conv = nn.Conv2d(ch, cout, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(h)))


class TinyUNet(nn.Module):
    """Block-wise UNet; forward() runs the same blocks (the monolithic contract)."""

    def __init__(self, cin: int, ctx_dim: int, ch: int = 16, heads: int = 2):
        super().__init__()
        emb = 4 * ch
        self.conditional = ctx_dim > 0
        self.time_embed = TimeEmbed(ch, emb)
        self.input_blocks = nn.ModuleList([
            ConvIn(cin, ch),                                   # skip: ch @ full
            ResAttn(ch, ch, emb, ctx_dim, heads, False),       # skip: ch @ full
            Down(ch),                                          # skip: ch @ half
            ResAttn(ch, 2 * ch, emb, ctx_dim, heads, False),   # skip: 2ch @ half
        ])
        self.middle_block = Middle(2 * ch, emb, ctx_dim, heads)
        self.output_blocks = nn.ModuleList([
            ResAttn(4 * ch, 2 * ch, emb, ctx_dim, heads, False),   # + 2ch skip
            ResAttn(3 * ch, 2 * ch, emb, ctx_dim, heads, True),    # + ch skip, up
            ResAttn(3 * ch, ch, emb, ctx_dim, heads, False),       # + ch skip
            ResAttn(2 * ch, ch, emb, ctx_dim, heads, False),       # + ch skip
        ])
        self.out = Out(ch, cin)

    def run(self, sample: torch.Tensor, timestep: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.run_emb(sample, self.time_embed(timestep), ctx)

    def run_emb(self, sample: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = sample
        skips = []
        for blk in self.input_blocks:
            h = blk(h, emb, ctx)
            skips.append(h)
        h = self.middle_block(h, emb, ctx)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, skips.pop()], dim=1), emb, ctx)
        return self.out(h)


class CondUNet(TinyUNet):
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.run(sample, timestep, encoder_hidden_states)


class UncondUNet(TinyUNet):
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.run(sample, timestep, torch.empty(0))


class CondUNet3(TinyUNet):
    """time_embed(timestep, timestep_cond, added_cond); the monolithic forward takes
    the two extra inputs as optional arguments (None = not given)."""

    def __init__(self, cin: int, ctx_dim: int, cond_dim: int, pooled_dim: int, add_dim: int = 8):
        super().__init__(cin, ctx_dim)
        self.time_embed = TimeEmbed3(16, 64, cond_dim, pooled_dim, add_dim)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                timestep_cond: Optional[torch.Tensor] = None,
                added_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        empty = torch.empty(0, device=sample.device)
        emb = self.time_embed(timestep, timestep_cond if timestep_cond is not None else empty,
                              added_cond if added_cond is not None else empty)
        return self.run_emb(sample, emb, encoder_hidden_states)


class ProbeTimeEmbed(nn.Module):
    """emb = cat(t [B, 1], timestep_cond or zeros [B, D], added_cond or zeros [B, A])."""

    def __init__(self, cond_dim: int, added_dim: int):
        super().__init__()
        self.cond_dim = cond_dim
        self.added_dim = added_dim

    def forward(self, t: torch.Tensor, timestep_cond: torch.Tensor, added_cond: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        tc = timestep_cond.float() if timestep_cond.numel() > 0 else torch.zeros(b, self.cond_dim, device=t.device)
        ac = added_cond.float() if added_cond.numel() > 0 else torch.zeros(b, self.added_dim, device=t.device)
        return torch.cat([t.float()[:, None], tc, ac], dim=1)


class ProbeIn(nn.Module):
    """Writes cat(emb, ctx flattened) into the image, zero-padded: [B, C, H, W]."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        flat = torch.cat([emb, ctx.reshape(b, -1).to(emb.dtype)], dim=1)
        flat = F.pad(flat, [0, c * hh * ww - flat.shape[1]])
        return flat.reshape(b, c, hh, ww).to(h.dtype)


class ProbeMiddle(nn.Module):
    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return h


class ProbeOutBlock(nn.Module):
    """cat([h, skip], 1) -> its first half (the probe image)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return h[:, : h.shape[1] // 2]


class ProbeOut(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h


class ProbeUNet(nn.Module):
    """Block-wise UNet without weights whose output shows what it was given."""

    def __init__(self, cond_dim: int, added_dim: int):
        super().__init__()
        self.time_embed = ProbeTimeEmbed(cond_dim, added_dim)
        self.input_blocks = nn.ModuleList([ProbeIn()])
        self.middle_block = ProbeMiddle()
        self.output_blocks = nn.ModuleList([ProbeOutBlock()])
        self.out = ProbeOut()

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return sample


class TinyTextEncoder(nn.Module):
    """Token + position embedding and one pre-norm transformer layer: [B, L] int64 -> [B, L, D]."""

    def __init__(self, vocab: int, length: int, dim: int, heads: int = 2):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.ln = nn.LayerNorm(dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(input_ids) + self.pos[: input_ids.shape[1]]
        return self.ln(self.layer(x))


class PooledTextEncoder(nn.Module):
    """SDXL text_encoder_2's contract: input_ids [B, L] -> (hidden [B, L, D], pooled [B, P]),
    pooled = proj(hidden at the end token), the end token having the largest id (CLIP)."""

    def __init__(self, vocab: int, length: int, dim: int, pooled: int):
        super().__init__()
        self.body = TinyTextEncoder(vocab, length, dim)
        self.proj = nn.Linear(dim, pooled, bias=False)

    def forward(self, input_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.body(input_ids)
        end = x[torch.arange(x.shape[0]), input_ids.argmax(dim=-1)]
        return x, self.proj(end)


class TinyVAEDecoder(nn.Module):
    """latents [B, 4, h, w] -> image [B, 3, 2h, 2w] in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(4, 16, 3, padding=1)
        self.conv_out = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv_in(latents))
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return torch.tanh(self.conv_out(h))


def write_tokenizer(folder: str) -> int:
    os.makedirs(folder, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    return len(vocab)


SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
}


def manifest(name, kind, size, cin, form, text, vae, scale):
    return {
        "format_version": 1,
        "name": name,
        "kind": kind,
        "sample_size": size,
        "in_channels": cin,
        "vae_scale_factor": scale,
        "scheduler": SCHEDULER,
        "unet": {"file": "unet.pt", "form": form, "downsample_factor": 2},
        "text_encoder": {"file": "text_encoder.pt", "context_length": 16, "hidden_size": 32} if text else None,
        "tokenizer": {"vocab": "tokenizer/vocab.json", "merges": "tokenizer/merges.txt"} if text else None,
        "vae_decoder": {"file": "vae_decoder.pt", "scaling_factor": 0.5} if vae else None,
        "defaults": {"sampler": "ddim", "steps": 4, "cfg_scale": 3.0,
                     "width": size[1] * scale, "height": size[0] * scale},
        "license": "MIT (random weights, for tests)",
        "attribution": "fewstep test fixture",
    }


def save_package(folder, man, unet, text=None, vae=None):
    os.makedirs(folder, exist_ok=True)
    unet.save(os.path.join(folder, "unet.pt"))
    if text is not None:
        text.save(os.path.join(folder, "text_encoder.pt"))
        write_tokenizer(os.path.join(folder, "tokenizer"))
    if vae is not None:
        vae.save(os.path.join(folder, "vae_decoder.pt"))
    tmp = os.path.join(folder, "model.json.tmp")
    with open(tmp, "w") as f:
        json.dump(man, f, indent=2)
    os.replace(tmp, os.path.join(folder, "model.json"))


class ThirdPartyOpModule(nn.Module):
    """Calls an operator that only a third-party library registers."""

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return torch.ops.thirdparty.mystery(sample)


def write_broken_files(folder: str) -> None:
    """TorchScript files the runtime must refuse with one line:
    unknown_op.pt needs an operator fewstep does not have;
    newer_version.pt claims a file-format version newer than any torch reads."""
    os.makedirs(folder, exist_ok=True)
    torch.library.define("thirdparty::mystery", "(Tensor x) -> Tensor")
    torch.library.impl("thirdparty::mystery", "CPU")(lambda x: x * 2)
    torch.jit.script(ThirdPartyOpModule()).save(os.path.join(folder, "unknown_op.pt"))
    ok = os.path.join(folder, "ok.pt")
    torch.jit.script(UncondUNet(3, 0).eval()).save(ok)
    with zipfile.ZipFile(ok) as src, zipfile.ZipFile(os.path.join(folder, "newer_version.pt"), "w",
                                                     zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/version"):
                data = b"99\n"
            dst.writestr(info.filename, data)
    os.remove(ok)


def write_manifest(folder: str, man: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, "model.json.tmp")
    with open(tmp, "w") as f:
        json.dump(man, f, indent=2)
    os.replace(tmp, os.path.join(folder, "model.json"))


def write_contract_packages(out: str, vocab: int) -> None:
    """The packages of the SDXL / LCM / Turbo contract (module docstring)."""
    tok = {"vocab": "tokenizer/vocab.json", "merges": "tokenizer/merges.txt"}
    blocks_tok = {"vocab": "../tiny-blocks/tokenizer/vocab.json", "merges": "../tiny-blocks/tokenizer/merges.txt"}
    te1 = {"file": "text_encoder.pt", "context_length": 16, "hidden_size": 24}
    te2 = {"file": "text_encoder_2.pt", "context_length": 16, "hidden_size": 24, "pooled_size": 8}

    # SDXL-like: context 24 + 24, pooled 8, time ids projected 8 wide each.
    sdxl = os.path.join(out, "tiny-sdxl")
    os.makedirs(sdxl, exist_ok=True)
    torch.jit.script(TinyTextEncoder(vocab, 16, 24).eval()).save(os.path.join(sdxl, "text_encoder.pt"))
    torch.jit.script(PooledTextEncoder(vocab, 16, 24, 8).eval()).save(os.path.join(sdxl, "text_encoder_2.pt"))
    torch.jit.script(CondUNet3(3, 48, 0, 8).eval()).save(os.path.join(sdxl, "unet.pt"))
    write_tokenizer(os.path.join(sdxl, "tokenizer"))
    write_tokenizer(os.path.join(sdxl, "tokenizer_2"))
    man = manifest("tiny-sdxl", "pixel", [16, 16], 3, "blocks", True, False, 1)
    man.update({
        "unet": {"file": "unet.pt", "form": "blocks", "downsample_factor": 2,
                 "addition_embed_type": "text_time", "addition_time_embed_dim": 8},
        "text_encoder": te1, "tokenizer": tok, "text_encoder_2": te2,
        "tokenizer_2": {"vocab": "tokenizer_2/vocab.json", "merges": "tokenizer_2/merges.txt", "pad_id": 0},
        "guidance": {"mode": "cfg", "force_zeros_for_empty_prompt": True},
    })
    write_manifest(sdxl, man)
    mono = json.loads(json.dumps(man))
    mono["name"] = "tiny-sdxl-mono"
    mono["unet"].update({"file": "../tiny-sdxl/unet.pt", "form": "monolithic"})
    for key in ("text_encoder", "text_encoder_2"):
        mono[key]["file"] = "../tiny-sdxl/" + mono[key]["file"]
    for key in ("tokenizer", "tokenizer_2"):
        for part in ("vocab", "merges"):
            mono[key][part] = "../tiny-sdxl/" + mono[key][part]
    write_manifest(os.path.join(out, "tiny-sdxl-mono"), mono)

    # LCM-like: guidance embedding of width 8; text encoder from tiny-blocks.
    lcm = os.path.join(out, "tiny-lcm")
    os.makedirs(lcm, exist_ok=True)
    unet = CondUNet3(3, 32, 8, 0)
    with torch.no_grad():
        unet.time_embed.cond_proj.weight.mul_(20.0)  # so that w visibly steers the image
    torch.jit.script(unet.eval()).save(os.path.join(lcm, "unet.pt"))
    man = manifest("tiny-lcm", "pixel", [16, 16], 3, "blocks", True, False, 1)
    man.update({
        "unet": {"file": "unet.pt", "form": "blocks", "downsample_factor": 2, "time_cond_proj_dim": 8},
        "text_encoder": {"file": "../tiny-blocks/text_encoder.pt", "context_length": 16, "hidden_size": 32},
        "tokenizer": blocks_tok,
        "guidance": {"mode": "embedded"},
        "defaults": {"sampler": "lcm", "steps": 2, "cfg_scale": 8.5, "width": 16, "height": 16},
    })
    man["scheduler"] = dict(SCHEDULER, original_inference_steps=50, timestep_scaling=10.0, set_alpha_to_one=True)
    write_manifest(lcm, man)

    # Turbo-like: tiny-blocks' weights, no CFG by default, trailing spacing.
    turbo = manifest("tiny-turbo", "pixel", [16, 16], 3, "blocks", True, False, 1)
    turbo.update({
        "unet": {"file": "../tiny-blocks/unet.pt", "form": "blocks", "downsample_factor": 2},
        "text_encoder": {"file": "../tiny-blocks/text_encoder.pt", "context_length": 16, "hidden_size": 32},
        "tokenizer": blocks_tok,
        "guidance": {"mode": "none"},
        "defaults": {"sampler": "euler_ancestral", "steps": 2, "width": 16, "height": 16},
    })
    turbo["scheduler"] = dict(SCHEDULER, timestep_spacing="trailing")
    write_manifest(os.path.join(out, "tiny-turbo"), turbo)

    # Probes: 3x32x32 images hold t (1), timestep_cond (8), added_cond (8 + 6) and the context.
    probe = os.path.join(out, "probe-sdxl")
    os.makedirs(probe, exist_ok=True)
    torch.jit.script(ProbeUNet(8, 14)).save(os.path.join(probe, "probe.pt"))
    probe_sched = dict(SCHEDULER, prediction_type="sample", clip_sample=False)
    man = json.loads(json.dumps(mono))
    man.update({"name": "probe-sdxl", "sample_size": [32, 32], "scheduler": probe_sched,
                "unet": {"file": "probe.pt", "form": "blocks", "downsample_factor": 1,
                         "addition_embed_type": "text_time", "addition_time_embed_dim": 8},
                "defaults": {"sampler": "ddim", "steps": 1, "cfg_scale": 1.0, "width": 32, "height": 32}})
    write_manifest(probe, man)
    man = manifest("probe-lcm", "pixel", [32, 32], 3, "blocks", True, False, 1)
    man.update({
        "scheduler": probe_sched,
        "unet": {"file": "../probe-sdxl/probe.pt", "form": "blocks", "downsample_factor": 1, "time_cond_proj_dim": 8},
        "text_encoder": {"file": "../tiny-blocks/text_encoder.pt", "context_length": 16, "hidden_size": 32},
        "tokenizer": blocks_tok,
        "guidance": {"mode": "embedded"},
        "defaults": {"sampler": "ddim", "steps": 1, "cfg_scale": 8.5, "width": 32, "height": 32},
    })
    write_manifest(os.path.join(out, "probe-lcm"), man)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    torch.manual_seed(0)
    vocab = 514
    text = torch.jit.script(TinyTextEncoder(vocab, 16, 32).eval())
    unet = torch.jit.script(CondUNet(3, 32).eval())
    save_package(os.path.join(out, "tiny-blocks"),
                 manifest("tiny-blocks", "pixel", [16, 16], 3, "blocks", True, False, 1), unet, text)
    save_package(os.path.join(out, "tiny-mono"),
                 manifest("tiny-mono", "pixel", [16, 16], 3, "monolithic", True, False, 1), unet, text)
    latent_unet = torch.jit.script(CondUNet(4, 32).eval())
    vae = torch.jit.script(TinyVAEDecoder().eval())
    save_package(os.path.join(out, "tiny-latent"),
                 manifest("tiny-latent", "latent", [8, 8], 4, "monolithic", True, True, 2),
                 latent_unet, text, vae)
    uncond = torch.jit.script(UncondUNet(3, 0).eval())
    save_package(os.path.join(out, "tiny-uncond"),
                 manifest("tiny-uncond", "pixel", [16, 16], 3, "monolithic", False, False, 1), uncond)
    write_contract_packages(out, vocab)
    write_broken_files(os.path.join(out, "broken"))
    with open(os.path.join(out, "stamp"), "w") as f:
        f.write("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
