"""CLIP text encoders of Stable Diffusion 1.x, 2.x and SDXL as TorchScript-able modules.

The architecture is CLIP's text transformer (Radford et al. 2021, "Learning
Transferable Visual Models From Natural Language Supervision", Sec. 2.4 and
Appendix: a pre-LayerNorm GPT-2-style transformer with a causal mask):

    h_0 = token_embedding(ids) + position_embedding[:L]
    h_i = h_{i-1} + attn(LN1(h_{i-1}));  h_i = h_i + fc2(act(fc1(LN2(h_i))))
    last = final_layer_norm(h_N)

act is QuickGELU x·σ(1.702x) for OpenAI's CLIP-L and the exact GELU for
OpenCLIP (SD 2.x's ViT-H, SDXL's bigG), as each transformers config says.

What each Stable Diffusion pipeline feeds the UNet (diffusers 0.42):
  - "sd15": CLIP ViT-L, `text_encoder(ids)[0]`: all layers, then final_layer_norm.
  - "sd2": OpenCLIP ViT-H, `text_encoder(ids)[0]` as for sd15. The "penultimate
    layer" of SD 2.x is built into diffusers' folder layout: its text_encoder
    config has 23 of OpenCLIP's 24 layers (diffusers' single-file conversion
    drops resblock 23), and the final LayerNorm is applied after layer 23.
  - "sdxl_te1": CLIP ViT-L, `hidden_states[-2]`: the output of layer N-1 of N,
    without final_layer_norm. Layer N and final_layer_norm are not exported.
  - "sdxl_te2": OpenCLIP bigG, a tuple (hidden_states[-2] [B, L, 1280],
    text_projection(final_layer_norm(h_N)[b, eos_b]) [B, 1280]).

The pooled token eos_b follows transformers' CLIPTextModel: with the legacy
config value eos_token_id == 2 it is argmax(ids) (the end token has the largest
id, 49407); otherwise the first position whose id equals eos_token_id.

Attention calls F.scaled_dot_product_attention with is_causal=True. fewstep's
rewrite pass (kernels/rewrite_attention.cpp) routes only unmasked SDPA to
fewstep::attention, so these calls stay aten SDPA in the runtime; they are
valid TorchScript either way.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from .errors import ExportError
except ImportError:  # run as a plain module from tools/export/
    from errors import ExportError

ROLES = ("sd15", "sd2", "sdxl_te1", "sdxl_te2")

# Keys of transformers' CLIPTextConfig that the modules read.
CONFIG_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps",
               "eos_token_id", "projection_dim")

# The original LDM single-file prefixes of the CLIP-L text model (OpenAI layout,
# which is transformers' own naming under `text_model.`).
LDM_PREFIX_SD15 = "cond_stage_model.transformer.text_model."
LDM_PREFIX_SDXL_TE1 = "conditioner.embedders.0.transformer.text_model."


class ClipAttention(nn.Module):
    """Causal multi-head self-attention (Vaswani et al. 2017, eq. 1; CLIP's mask).
    x [B, L, D] float -> [B, L, D]; D = heads * head_dim."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        if d % heads != 0:
            raise ExportError(f"text encoder: hidden_size {d} is not a multiple of num_attention_heads {heads}")
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, seq, d = x.shape[0], x.shape[1], x.shape[2]
        q = self.q_proj(x).reshape(b, seq, self.heads, -1).transpose(1, 2)
        k = self.k_proj(x).reshape(b, seq, self.heads, -1).transpose(1, 2)
        v = self.v_proj(x).reshape(b, seq, self.heads, -1).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(o.transpose(1, 2).reshape(b, seq, d))


class ClipMlp(nn.Module):
    """fc2(act(fc1(x))), x [B, L, D] -> [B, L, D]; act QuickGELU or exact GELU."""

    def __init__(self, d: int, inner: int, quick_gelu: bool):
        super().__init__()
        self.quick_gelu = quick_gelu
        self.fc1 = nn.Linear(d, inner)
        self.fc2 = nn.Linear(inner, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.quick_gelu:
            h = h * torch.sigmoid(1.702 * h)  # QuickGELU (Hendrycks & Gimpel 2016, Sec. 2)
        else:
            h = F.gelu(h)
        return self.fc2(h)


class ClipLayer(nn.Module):
    """One pre-LN transformer layer: x + attn(LN1 x), then + mlp(LN2 x). [B, L, D] -> [B, L, D]."""

    def __init__(self, d: int, heads: int, inner: int, eps: float, quick_gelu: bool):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.self_attn = ClipAttention(d, heads)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = ClipMlp(d, inner, quick_gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEmbeddings(nn.Module):
    """ids [B, L] int64 (L <= max_position_embeddings) -> token + position embedding [B, L, D]."""

    def __init__(self, vocab: int, positions: int, d: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(positions, d)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        return self.token_embedding(input_ids) + self.position_embedding.weight[:seq].unsqueeze(0)


class ClipEncoder(nn.Module):
    """The layer stack (a ModuleList named like transformers' CLIPEncoder)."""

    def __init__(self, layers: List[ClipLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


def _layers(cfg: Dict, count: int) -> List[ClipLayer]:
    act = cfg["hidden_act"]
    if act not in ("quick_gelu", "gelu"):
        raise ExportError(f"text encoder: hidden_act '{act}' is not supported (quick_gelu or gelu)")
    return [ClipLayer(cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"],
                      float(cfg["layer_norm_eps"]), act == "quick_gelu") for _ in range(count)]


class ClipTextHidden(nn.Module):
    """Roles sd15, sd2 (all layers, final LayerNorm) and sdxl_te1 (N-1 layers, no LayerNorm).

    forward(input_ids [B, L] int64) -> hidden [B, L, D] in the weights' dtype.
    """

    def __init__(self, cfg: Dict, role: str):
        super().__init__()
        n = int(cfg["num_hidden_layers"])
        penultimate = role == "sdxl_te1"
        if penultimate and n < 2:
            raise ExportError(f"text encoder: role {role} needs at least 2 layers, the config has {n}")
        d = int(cfg["hidden_size"])
        self.embeddings = ClipEmbeddings(int(cfg["vocab_size"]), int(cfg["max_position_embeddings"]), d)
        self.encoder = ClipEncoder(_layers(cfg, n - 1 if penultimate else n))
        self.final_layer_norm = nn.Identity() if penultimate else nn.LayerNorm(d, eps=float(cfg["layer_norm_eps"]))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids)
        for layer in self.encoder.layers:
            h = layer(h)
        return self.final_layer_norm(h)


class ClipTextHiddenPooled(nn.Module):
    """Role sdxl_te2: (penultimate hidden [B, L, D], projected pooled embedding [B, P]).

    forward(input_ids [B, L] int64, each row holding the end token) ->
    (hidden_states[-2] [B, L, D], text_projection(final_layer_norm(h_N)[b, eos_b]) [B, P]).
    """

    def __init__(self, cfg: Dict):
        super().__init__()
        n = int(cfg["num_hidden_layers"])
        if n < 2:
            raise ExportError(f"text encoder: role sdxl_te2 needs at least 2 layers, the config has {n}")
        d = int(cfg["hidden_size"])
        self.embeddings = ClipEmbeddings(int(cfg["vocab_size"]), int(cfg["max_position_embeddings"]), d)
        self.encoder = ClipEncoder(_layers(cfg, n))
        self.final_layer_norm = nn.LayerNorm(d, eps=float(cfg["layer_norm_eps"]))
        self.text_projection = nn.Linear(d, int(cfg["projection_dim"]), bias=False)
        self.last = n - 1
        self.eos_token_id = int(cfg["eos_token_id"])
        # transformers keeps argmax(ids) for configs with the pre-#24773 value 2.
        self.argmax_pooling = self.eos_token_id == 2

    def forward(self, input_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.embeddings(input_ids)
        penultimate = h
        for i, layer in enumerate(self.encoder.layers):
            if i == self.last:
                penultimate = h
            h = layer(h)
        h = self.final_layer_norm(h)
        ids = input_ids.to(torch.int32)
        if self.argmax_pooling:
            eos = ids.argmax(dim=-1)
        else:
            eos = (ids == self.eos_token_id).to(torch.int32).argmax(dim=-1)
        rows = torch.arange(h.shape[0], device=h.device)
        pooled = self.text_projection(h[rows, eos])
        return penultimate, pooled


def _check_role(arch_role: str) -> None:
    if arch_role not in ROLES:
        raise ExportError(f"text encoder: unknown role '{arch_role}' (one of {', '.join(ROLES)})")


def build(cfg: Dict, arch_role: str, device: Optional[torch.device] = None) -> nn.Module:
    """A text encoder for `arch_role` from a CLIPTextConfig-style dict (keys CONFIG_KEYS;
    projection_dim only for sdxl_te2), with PyTorch's default random init, on `device`
    (e.g. "meta" to count parameters without memory). Needs only torch.
    Raises ExportError for an unknown role or an unsupported config."""
    _check_role(arch_role)
    missing = [k for k in CONFIG_KEYS if k not in cfg and not (k == "projection_dim" and arch_role != "sdxl_te2")]
    if missing:
        raise ExportError(f"text encoder config: missing {', '.join(missing)}")
    ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with ctx:
        module = ClipTextHiddenPooled(cfg) if arch_role == "sdxl_te2" else ClipTextHidden(cfg, arch_role)
    return module.eval()


def from_transformers(model: nn.Module, arch_role: str) -> nn.Module:
    """Converts transformers' CLIPTextModel / CLIPTextModelWithProjection into fewstep's module.

    model: the text encoder a diffusers pipeline holds (any width, depth and head count;
    weights in any float dtype, kept). arch_role: "sd15", "sd2", "sdxl_te1" or "sdxl_te2"
    (see the module docstring for what each returns). The result's parameters share
    storage with `model`'s (no copy). Output matches diffusers' use of `model` to fp32
    rounding. Raises ExportError when the role needs what the model lacks (a projection
    for sdxl_te2) or the config is not supported.
    """
    _check_role(arch_role)
    cfg = {k: getattr(model.config, k) for k in CONFIG_KEYS if hasattr(model.config, k)}
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("text_model."):
            key = key[len("text_model."):]
        if key.endswith("position_ids"):
            continue  # a non-persistent arange buffer; the module slices positions itself
        state[key] = value
    if arch_role == "sdxl_te2" and "text_projection.weight" not in state:
        raise ExportError("text_encoder_2: role sdxl_te2 needs CLIPTextModelWithProjection (no text_projection)")
    if arch_role == "sdxl_te2":
        cfg["projection_dim"] = state["text_projection.weight"].shape[0]
    module = build(cfg, arch_role, device="meta")
    wanted = set(module.state_dict().keys())
    loaded = {k: v for k, v in state.items() if k in wanted}
    missing = sorted(wanted - set(loaded))
    if missing:
        raise ExportError(f"text encoder ({arch_role}): the model lacks {len(missing)} tensors, e.g. "
                          + ", ".join(missing[:4]))
    module.load_state_dict(loaded, strict=True, assign=True)
    return module.eval()


def ldm_key_map(ldm_keys: Iterable[str], prefix: str, arch_role: str,
                num_hidden_layers: int) -> Tuple[Dict[str, str], List[str], List[str]]:
    """Maps CLIP-L keys of an original LDM single-file checkpoint onto the module's keys.

    ldm_keys: all keys of the checkpoint (others than `prefix` are ignored); prefix:
    LDM_PREFIX_SD15 or LDM_PREFIX_SDXL_TE1; arch_role "sd15" or "sdxl_te1";
    num_hidden_layers: the checkpoint's layer count (12 for CLIP-L).
    Returns (mapping ldm_key -> module_key, dropped ldm keys that the role does not
    use (position_ids; for sdxl_te1 also the last layer and final_layer_norm),
    unknown ldm keys under `prefix`). The OpenAI layout is transformers' naming,
    so a mapped key is the suffix after `prefix`.
    """
    if arch_role not in ("sd15", "sdxl_te1"):
        raise ExportError(f"text encoder: the LDM key map covers CLIP-L roles sd15 and sdxl_te1, not {arch_role}")
    last = f"encoder.layers.{num_hidden_layers - 1}."
    mapping, dropped, unknown = {}, [], []
    for key in ldm_keys:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if rest == "embeddings.position_ids":
            dropped.append(key)
        elif arch_role == "sdxl_te1" and (rest.startswith(last) or rest.startswith("final_layer_norm.")):
            dropped.append(key)
        elif rest.startswith(("embeddings.", "encoder.layers.", "final_layer_norm.")):
            mapping[key] = rest
        else:
            unknown.append(key)
    return mapping, dropped, unknown
