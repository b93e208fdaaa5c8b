"""The emoji model's committed checkpoint, sized to fit the repository budget.

The model's weights are committed once, as the package's fp16 EMA weights
(models/emoji/unet.pt and text_encoder.pt, which fewstep runs). What a resumed
training run needs besides them, the raw (non-EMA) weights, is stored in
models/emoji/checkpoint/checkpoint.pt as their difference from the fp16 EMA,
quantised to int8 with one fp32 scale per output row (symmetric absmax):

    raw[k] ~= fp32(ema16[k]) + delta_q[k] * delta_scale[k][:, None, ...]

The rounding error is at most scale/2 per weight, i.e. 1/254 of the largest
raw-minus-EMA difference in that row: noise well below one optimiser step at
the learning rates used, and the EMA itself is exact. 7.1M parameters cost
14.3 MB (package) + 7.2 MB (checkpoint) instead of 2 x 14.3 MB, which keeps the
model under the 25 MB the issue allows. The optimiser state is not committed:
a resumed run rebuilds it and warms the learning rate up again.

Format 1 (session 1: fp16 "model" and fp16 "ema" dicts in the checkpoint)
is still read.
"""
import os

import torch

FORMAT = 2


def read_package_ema(pkg):
    """EMA weights from the package's TorchScript files, as {name: fp32 tensor}
    with EmojiModel's key names ("unet.*", "text_encoder.*")."""
    out = {}
    for prefix, fname in (("unet", "unet.pt"), ("text_encoder", "text_encoder.pt")):
        m = torch.jit.load(os.path.join(pkg, fname), map_location="cpu")
        for k, v in m.state_dict().items():
            out["%s.%s" % (prefix, k)] = v.float() if v.is_floating_point() else v
    return out


def quantize_delta(raw, ema16):
    """raw: {k: fp32}, ema16: {k: fp16} -> ({k: int8}, {k: fp32 [rows]})."""
    q, scale = {}, {}
    for k, r in raw.items():
        if not r.is_floating_point():
            continue
        d = r.float() - ema16[k].float()
        rows = d.reshape(d.shape[0], -1) if d.dim() > 0 else d.reshape(1, 1)
        s = rows.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q[k] = torch.round(rows / s[:, None]).clamp(-127, 127).to(torch.int8).reshape(d.shape)
        scale[k] = s
    return q, scale


def dequantize(ema, q, scale):
    """Inverse of quantize_delta given the fp32 view of the fp16 EMA."""
    raw = {}
    for k, e in ema.items():
        if k not in q:
            raw[k] = e.clone()
            continue
        d = q[k].float()
        rows = d.reshape(d.shape[0], -1) if d.dim() > 0 else d.reshape(1, 1)
        raw[k] = e + (rows * scale[k][:, None]).reshape(e.shape)
    return raw


def load(ckpt, pkg):
    """Returns (raw weights, EMA weights, meta) as fp32 dicts and the metadata
    (step, ema_n, train_s, config, batch, lr). Raises FileNotFoundError."""
    return _unpack(torch.load(ckpt, map_location="cpu"), pkg)


def newest(state, ckpt, pkg):
    """The newer (by step) of the local training state and the committed
    checkpoint; the local state wins a tie. Only the chosen one is unpacked
    (the package is read only for a committed format-2 checkpoint).

    Returns None when neither file exists, else (source, raw, ema, meta):
    source "local" or "committed"; raw and EMA weights as {name: tensor};
    meta the local state dict itself (with "opt" and "warm_from") or the
    checkpoint's metadata."""
    local = torch.load(state, map_location="cpu") if os.path.exists(state) else None
    ck = torch.load(ckpt, map_location="cpu") if os.path.exists(ckpt) else None
    if local is not None and (ck is None or local["step"] >= ck["step"]):
        return "local", local["model"], local["ema"], local
    if ck is None:
        return None
    return ("committed",) + _unpack(ck, pkg)


def _unpack(ck, pkg):
    meta = {k: v for k, v in ck.items() if k not in ("model", "ema", "delta_q", "delta_scale")}
    if ck.get("format", 1) == 1:
        raw = {k: v.float() for k, v in ck["model"].items()}
        ema = {k: v.float() for k, v in ck["ema"].items()}
        return raw, ema, meta
    ema = read_package_ema(pkg)
    return dequantize(ema, ck["delta_q"], ck["delta_scale"]), ema, meta


def save(ckpt, raw, ema16, meta):
    """Writes the format-2 checkpoint (atomically). ema16 must be exactly the
    fp16 weights just written into the package."""
    q, scale = quantize_delta(raw, ema16)
    body = dict(meta)
    body.update(format=FORMAT, delta_q=q, delta_scale=scale)
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    tmp = ckpt + ".tmp"
    torch.save(body, tmp)
    os.replace(tmp, ckpt)
