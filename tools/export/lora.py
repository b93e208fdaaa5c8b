"""Merging LoRA files into diffusers' UNet and transformers' text encoders, in place.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
Sec. 4.1, eq. 3) adds a rank-r product to a frozen weight: W' = W + s·(α/r)·B A,
with A = lora_down [r, in, (kh, kw)], B = lora_up [out, r, (1, 1)], α the
file's alpha (default r) and s the user's scale. Conv layers (kohya's LoCon,
PEFT's Conv2d LoRA) use the same product on the flattened kernels:
ΔW = (B[:, :, 0, 0] @ A.flatten(1)).reshape(W.shape), for 1x1 and 3x3 kernels.

Formats, told apart by their keys:
  - kohya / sd-scripts: `lora_unet_<module path with "_" for ".">.lora_down.weight`,
    `.lora_up.weight`, `.alpha`; text encoders `lora_te_`/`lora_te1_` (first) and
    `lora_te2_` (second), their paths starting at `text_model_`. The module path
    is found by comparing with every Linear/Conv2d path of the model written the
    same way. The published LCM-LoRA files (latent-consistency/lcm-lora-*) use this
    kohya layout with diffusers' UNet module names, UNet only, including the
    ResNet 3x3 convs, time_emb_proj and the up/down-sampler convs.
  - diffusers / PEFT: `unet.<path>.lora_A.weight` / `.lora_B.weight` (also the older
    `.lora.down/up.weight`, `.lora_linear_layer.down/up.weight` and the
    attention-processor `.processor.to_q_lora.down.weight` spellings),
    `text_encoder.` / `text_encoder_2.` for the text encoders. α/r comes from the
    file's safetensors metadata `lora_adapter_metadata` (PEFT's LoraConfig: r,
    lora_alpha, rank_pattern, alpha_pattern, use_rslora) when present, else
    from `<path>.alpha` keys, else α = r (scale 1), as diffusers' loader does.

kohya also names UNet layers by the original LDM/SGM module paths (`lora_unet_input_blocks_4_1_...`,
as sd-scripts does for SDXL and LoRA extraction does for SD 1.x): sgm_path() gives each diffusers
layer its LDM path (the openaimodel UNet's input_blocks/middle_block/output_blocks numbering),
so both spellings resolve. LoHa/LoKr, DoRA and LoCon's Tucker `lora_mid` are refused with a
one-line ExportError.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

try:
    from .errors import ExportError
except ImportError:  # run as a plain module from tools/export/
    from errors import ExportError

KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "te0", "lora_te1_": "te0", "lora_te2_": "te1"}
PEFT_PREFIXES = {"unet.": "unet", "text_encoder.": "te0", "text_encoder_2.": "te1"}
_PEFT_SUFFIXES = ((".lora_A.weight", "down"), (".lora_B.weight", "up"),
                  (".lora.down.weight", "down"), (".lora.up.weight", "up"),
                  (".lora_linear_layer.down.weight", "down"), (".lora_linear_layer.up.weight", "up"),
                  (".alpha", "alpha"))
# The attention-processor spelling of diffusers' first LoRA format: <attn>.processor.to_q_lora.down.weight
_PROCESSOR = re.compile(r"(.*?)(?:\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
_TE_ATTN = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}
_UNSUPPORTED = ("hada_", "lokr_", "dora_scale", "lora_magnitude_vector", "lora_mid")
SHOW = 4  # offending keys listed in an error


@dataclass
class LoraPair:
    """One low-rank update: W[target module] += scale * up @ down."""
    component: str        # "unet", "te0" or "te1"
    module: str           # module path inside that component
    key: str              # the file's key stem, for messages
    down: Optional[torch.Tensor] = None
    up: Optional[torch.Tensor] = None
    alpha: Optional[float] = None
    alpha_over_rank: Optional[float] = None  # set by PEFT metadata (overrides alpha)

    def factor(self) -> float:
        """α/r for this pair (α = r, i.e. 1, when the file gives none)."""
        if self.alpha_over_rank is not None:
            return self.alpha_over_rank
        rank = self.down.shape[0]
        return 1.0 if self.alpha is None else self.alpha / rank


def read_lora(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors and string metadata of a .safetensors LoRA file (never pickle).
    Raises ExportError naming `path` when it is missing, truncated or not safetensors."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise ExportError(f"--lora {path}: no such file") from None
    except Exception as e:  # safetensors raises SafetensorError / OSError with a multi-line text
        raise ExportError(f"--lora {path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    return tensors, metadata


def _few(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def _linear_modules(model: nn.Module, text: bool) -> Dict[str, str]:
    """accepted path -> module path of every Linear/Conv2d. Text encoders: also under `text_model.`
    and without it; a diffusers UNet: also its LDM/SGM path (sgm_path)."""
    paths = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            paths[name] = name
            if text:
                short = name[len("text_model."):] if name.startswith("text_model.") else name
                paths.setdefault("text_model." + short, name)
                paths.setdefault(short, name)
            elif hasattr(model, "down_blocks"):
                sgm = sgm_path(name, model)
                if sgm:
                    paths.setdefault(sgm, name)
    return paths


_SGM_FIXED = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
              "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
              "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
_SGM_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_SGM_MID = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}


def sgm_path(path: str, unet: nn.Module) -> Optional[str]:
    """The original LDM/SGM module path (Rombach et al. 2022's openaimodel UNet) of a module path of
    diffusers' UNet2DConditionModel, or None outside the blocks. Down level l, layer k is
    input_blocks[1 + sum_{l'<l}(n_l' + 1) + k] (its downsampler at k = n_l, ".op"); up level l,
    layer k is output_blocks[sum_{l'<l}(m_l') + k] with m_l = n_(L-1-l) + 1 layers (its upsampler
    in the last one, sub-module 2 after an attention, else 1); ResNet layers renamed per _SGM_RESNET."""
    if path in _SGM_FIXED:
        return _SGM_FIXED[path]
    m = re.fullmatch(r"(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?(resnets|attentions|downsamplers|upsamplers)"
                     r"\.(\d+)\.(.+)", path)
    if not m:
        return None
    kind, level, part, k, rest = m.group(1), int(m.group(2) or 0), m.group(3), int(m.group(4)), m.group(5)
    if part == "resnets":
        head, _, tail = rest.partition(".")
        rest = _SGM_RESNET.get(head, head) + ("." + tail if tail else "")
    if kind == "mid_block":
        return f"middle_block.{_SGM_MID[(part, k)]}.{rest}" if (part, k) in _SGM_MID else None
    lpb = unet.config.layers_per_block
    per_level = list(lpb) if isinstance(lpb, (list, tuple)) else [lpb] * len(unet.down_blocks)
    if kind == "down_blocks":
        index = 1 + sum(n + 1 for n in per_level[:level]) + (per_level[level] if part == "downsamplers" else k)
        if part == "downsamplers":
            return f"input_blocks.{index}.0.{rest.replace('conv', 'op', 1)}"
        return f"input_blocks.{index}.{1 if part == 'attentions' else 0}.{rest}"
    up_layers = [n + 1 for n in reversed(per_level)]
    index = sum(up_layers[:level]) + (up_layers[level] - 1 if part == "upsamplers" else k)
    if part == "upsamplers":
        return f"output_blocks.{index}.{2 if hasattr(unet.up_blocks[level], 'attentions') else 1}.{rest}"
    return f"output_blocks.{index}.{1 if part == 'attentions' else 0}.{rest}"


_KOHYA_KINDS = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}


def _group(tensors: Dict[str, torch.Tensor], classify, path: str, fmt: str) -> List[LoraPair]:
    """Groups a file's tensors into LoraPairs. classify(key) gives (component, module path or None
    when no layer matches, key stem, "down"|"up"|"alpha"), or None for a key of another format."""
    pairs: Dict[Tuple[str, str], LoraPair] = {}
    unmatched, unknown = [], []
    for key, value in tensors.items():
        entry = classify(key)
        if entry is None:
            unknown.append(key)
            continue
        component, module, stem, kind = entry
        if module is None:
            unmatched.append(key)
            continue
        pair = pairs.setdefault((component, module), LoraPair(component, module, stem))
        if kind == "alpha":
            pair.alpha = float(value.float().item())
        elif kind == "down":
            pair.down = value
        else:
            pair.up = value
    _report(path, unknown, unmatched, fmt)
    return list(pairs.values())


def _parse_kohya(tensors: Dict[str, torch.Tensor], tables: Dict[str, Dict[str, str]], path: str) -> List[LoraPair]:
    flat = {c: {p.replace(".", "_"): m for p, m in t.items()} for c, t in tables.items()}

    def classify(key: str):
        stem, _, suffix = key.partition(".")
        prefix = next((p for p in KOHYA_PREFIXES if stem.startswith(p)), None)
        if prefix is None or suffix not in _KOHYA_KINDS:
            return None
        component = KOHYA_PREFIXES[prefix]
        return component, flat.get(component, {}).get(stem[len(prefix):]), stem, _KOHYA_KINDS[suffix]

    return _group(tensors, classify, path, "kohya")


def _peft_target(rest: str, component: str) -> Tuple[str, str]:
    """(module path, "down"|"up"|"alpha") of a diffusers/PEFT key without its component prefix."""
    m = _PROCESSOR.match(rest)
    if m:
        parent, proj, kind = m.groups()
        if component == "unet":
            return f"{parent}.{'to_out.0' if proj == 'to_out' else proj}", kind
        return f"{parent}.{_TE_ATTN[proj]}", kind
    for suffix, kind in _PEFT_SUFFIXES:
        if rest.endswith(suffix):
            return rest[:-len(suffix)], kind
    return "", ""


def _parse_peft(tensors: Dict[str, torch.Tensor], metadata: Dict[str, str], tables: Dict[str, Dict[str, str]],
                path: str) -> List[LoraPair]:
    def classify(key: str):
        prefix = next((p for p in PEFT_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            return None
        component = PEFT_PREFIXES[prefix]
        target, kind = _peft_target(key[len(prefix):], component)
        if not kind:
            return None
        return component, tables.get(component, {}).get(target), prefix + target, kind

    pairs = _group(tensors, classify, path, "diffusers/PEFT")
    _apply_peft_metadata(pairs, metadata, path)
    return pairs


def _apply_peft_metadata(pairs: List[LoraPair], metadata: Dict[str, str], path: str) -> None:
    """Sets α/r from PEFT's LoraConfig saved as `lora_adapter_metadata` (keys "unet.r", ...)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ExportError(f"--lora {path}: metadata lora_adapter_metadata is not JSON") from None
    names = {"unet": "unet", "te0": "text_encoder", "te1": "text_encoder_2"}
    for pair in pairs:
        cfg = {k[len(names[pair.component]) + 1:]: v for k, v in meta.items()
               if k.startswith(names[pair.component] + ".")}
        if not cfg:
            continue
        if cfg.get("use_dora"):
            raise ExportError(f"--lora {path}: DoRA adapters are not supported")
        default_rank = cfg.get("r", pair.down.shape[0] if pair.down is not None else 1)
        rank = _pattern(cfg.get("rank_pattern") or {}, pair.module, default_rank)
        alpha = _pattern(cfg.get("alpha_pattern") or {}, pair.module, cfg.get("lora_alpha", rank))
        pair.alpha_over_rank = alpha / (math.sqrt(rank) if cfg.get("use_rslora") else rank)


def _pattern(patterns: Dict[str, float], module: str, default: float) -> float:
    """PEFT's rank/alpha pattern lookup: the first key k with module matching (.*\\.)?(k)$."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return float(default)


def _report(path: str, unknown: List[str], unmatched: List[str], fmt: str) -> None:
    bad = [k for k in unknown if any(u in k for u in _UNSUPPORTED)]
    if bad:
        raise ExportError(f"--lora {path}: unsupported adapter type (LoHa/LoKr/DoRA/Tucker) in keys {_few(bad)}")
    if unknown:
        raise ExportError(f"--lora {path}: {len(unknown)} keys are not {fmt} LoRA keys: {_few(unknown)}")
    if unmatched:
        raise ExportError(f"--lora {path}: {len(unmatched)} keys match no layer of the model: {_few(unmatched)}")


def _check_shapes(pair: LoraPair, weight: torch.Tensor, path: str) -> None:
    """ExportError unless down [r, in(, kh, kw)] and up [out, r(, 1, 1)] fit weight [out, in(, kh, kw)]."""
    if pair.down is None or pair.up is None:
        raise ExportError(f"--lora {path}: {pair.key} lacks its {'up' if pair.up is None else 'down'} weight")
    down, up = pair.down, pair.up
    fits = (up.dim() in (2, 4) and up.shape[0] == weight.shape[0] and up.shape[1] == down.shape[0]
            and all(s == 1 for s in up.shape[2:]) and down.dim() in (2, 4) and down.shape[1] == weight.shape[1]
            and (tuple(down.shape[2:]) == tuple(weight.shape[2:])
                 or (down.dim() == 2 and all(s == 1 for s in weight.shape[2:]))))
    if not fits:
        raise ExportError(f"--lora {path}: shape mismatch at {pair.key}: down {list(down.shape)}, "
                          f"up {list(up.shape)}, layer weight {list(weight.shape)}")


def _delta(pair: LoraPair, shape: torch.Size) -> torch.Tensor:
    """up @ down in float32, reshaped to the layer weight's shape."""
    rank = pair.down.shape[0]
    up = pair.up.float().reshape(pair.up.shape[0], rank)
    return (up @ pair.down.float().reshape(rank, -1)).reshape(shape)


def parse_lora(path: str, tables: Dict[str, Dict[str, str]]) -> List[LoraPair]:
    """The LoRA pairs of one file, each resolved to a Linear/Conv2d path in `tables`
    (component -> {accepted path: module path}). Raises ExportError for bad files."""
    tensors, metadata = read_lora(path)
    if not tensors:
        raise ExportError(f"--lora {path}: the file holds no tensors")
    if any(k.startswith(tuple(KOHYA_PREFIXES)) for k in tensors):
        return _parse_kohya(tensors, tables, path)
    if any(k.startswith(tuple(PEFT_PREFIXES)) for k in tensors):
        return _parse_peft(tensors, metadata, tables, path)
    raise ExportError(f"--lora {path}: no kohya (lora_unet_/lora_te_) or diffusers (unet./text_encoder.) "
                      f"LoRA keys: {_few(list(tensors))}")


@torch.no_grad()
def merge_loras(unet: nn.Module, text_encoders: list, loras: List[Tuple[str, float]]) -> int:
    """Merges LoRA files into the models' weights in place: W += scale * (α/r) * up @ down.

    unet: diffusers' UNet2DConditionModel (any config); text_encoders: transformers CLIP
    text models in pipeline order ([text_encoder] or [text_encoder, text_encoder_2]; None
    entries allowed); loras: (path to .safetensors, user scale) pairs, merged in order.
    The update is computed in float32 and added in each weight's dtype. All files are
    read and checked before any weight changes. Returns the number of layers updated.
    Raises ExportError (one line, naming the file and a few keys) for a file that is not
    safetensors, keys that match no layer, a text-encoder LoRA without that encoder,
    shapes that do not fit, or unsupported adapter types.
    """
    tables = {"unet": _linear_modules(unet, text=False)}
    for i, te in enumerate(text_encoders):
        if te is not None:
            tables[f"te{i}"] = _linear_modules(te, text=True)
    models = {"unet": unet, **{f"te{i}": te for i, te in enumerate(text_encoders) if te is not None}}
    plans = []
    for path, scale in loras:
        for pair in parse_lora(path, tables):
            weight = models[pair.component].get_submodule(pair.module).weight
            _check_shapes(pair, weight, path)
            plans.append((weight, pair, float(scale) * pair.factor()))
    for weight, pair, factor in plans:
        weight.add_((_delta(pair, weight.shape) * factor).to(weight.dtype))
    return len(plans)
