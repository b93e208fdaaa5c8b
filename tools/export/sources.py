"""What the exporter reads: a single-file LDM checkpoint, a diffusers folder, or random weights of a
named architecture. Each becomes a `Model`: diffusers/transformers modules in fp32 (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel[WithProjection]) plus the scheduler config, generation defaults and
tokenizer sources of the package. Nothing is fetched: configs come from tools/export/configs/ or the
folder itself, and weights are read with the safetensors library only (never pickle).
"""
import contextlib
import copy
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

import ldm_layout as L
import unet as unet_mod
from errors import ExportError

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = ("sd15", "sd21", "sd21-v", "sdxl", "sd-turbo", "sdxl-turbo")
FAMILY_ARCHS = {"sd1": ("sd15",), "sd2": ("sd21", "sd21-v", "sd-turbo"), "sdxl": ("sdxl", "sdxl-turbo")}
FAMILY_LABEL = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
ROLES = {"sd1": ["sd15"], "sd2": ["sd2"], "sdxl": ["sdxl_te1", "sdxl_te2"]}
# LCM UNets (a time_cond_proj_dim): one UNet call per step, w through timestep_cond (Luo et al. 2023);
# diffusers' LatentConsistencyModelPipeline defaults: 4 steps, guidance_scale 8.5.
LCM_DEFAULTS = {"sampler": "lcm", "steps": 4, "cfg_scale": 8.5}


@dataclass
class Model:
    """A model ready for conversion: modules in fp32 eval mode and the package's metadata."""
    arch: str
    family: str
    unet: object
    vae: object
    text_encoders: List[object]
    tokenizers: List[Optional[str]]
    scheduler: dict
    guidance: dict
    defaults: dict
    source: dict = field(default_factory=dict)

    @property
    def roles(self) -> List[str]:
        return ROLES[self.family]


def arch_config(arch: str) -> dict:
    """The shipped config of an architecture (configs/ARCH.json, merged onto its "base")."""
    with open(os.path.join(HERE, "configs", arch + ".json"), encoding="utf-8") as f:
        cfg = json.load(f)
    if "base" in cfg:
        merged = arch_config(cfg.pop("base"))
        for key, value in cfg.items():
            if key in ("unet", "vae", "text_encoder", "text_encoder_2"):
                merged[key].update(value)
            else:
                merged[key] = value
        cfg = merged
    return cfg


def choose_arch(family: str, arch: Optional[str], where: str, v_pred: bool = False) -> str:
    """--arch checked against the family told by the keys; the family's default when not given."""
    if arch:
        if arch not in FAMILY_ARCHS[family]:
            raise ExportError("--arch %s does not fit %s: it is an %s model (--arch %s)" % (
                arch, where, FAMILY_LABEL[family], " or ".join(FAMILY_ARCHS[family])))
        return arch
    if family == "sd2":
        if v_pred:
            return "sd21-v"
        raise ExportError("%s is an SD 2.x model and its keys cannot tell epsilon (512 base) from v prediction "
                          "(768-v) or SD-Turbo: pass --arch sd21, sd21-v or sd-turbo" % where)
    return FAMILY_ARCHS[family][0]


def reduced(cfg: dict, family: str, n: int) -> dict:
    """The architecture shrunk for tests (--model-channels N): UNet width N (heads = max(1, width/64)
    where the architecture sizes heads by width), text encoders width 2N with 2 layers, VAE width N/2.
    SDXL's transformer depths per level (1, 2, 10) become (1, 2, 2): still unequal, and the package
    stays under 50 MB."""
    if n < 8 or n % 8:
        raise ExportError("--model-channels %d: use a multiple of 8 (8, 16, 32, ...)" % n)
    cfg = copy.deepcopy(cfg)
    u = cfg["unet"]
    mults = [c // u["block_out_channels"][0] for c in u["block_out_channels"]]
    u["block_out_channels"] = [n * m for m in mults]
    u["norm_num_groups"] = L.norm_groups(n)
    if family != "sd1":
        u["attention_head_dim"] = [L.heads_for(c) for c in u["block_out_channels"]]
    if isinstance(u.get("transformer_layers_per_block"), list):
        u["transformer_layers_per_block"] = [min(d, 2) for d in u["transformer_layers_per_block"]]
    ctx = 0
    for key in ("text_encoder", "text_encoder_2"):
        if key in cfg:
            t = cfg[key]
            t.update({"hidden_size": 2 * n, "intermediate_size": 8 * n, "num_hidden_layers": 2,
                      "num_attention_heads": L.heads_for(2 * n)})
            if key == "text_encoder_2":
                t["projection_dim"] = 2 * n
            ctx += 2 * n
    u["cross_attention_dim"] = ctx
    if u.get("addition_embed_type") == "text_time":
        u["projection_class_embeddings_input_dim"] = 2 * n + 6 * u["addition_time_embed_dim"]
    v = cfg["vae"]
    vm = [c // v["block_out_channels"][0] for c in v["block_out_channels"]]
    v["block_out_channels"] = [n // 2 * m for m in vm]
    v["norm_num_groups"] = L.norm_groups(n // 2)
    return cfg


@contextlib.contextmanager
def _empty_weights():
    """Parameters on the meta device (no memory, no init), buffers real; then load with assign=True."""
    try:
        from accelerate import init_empty_weights
    except ImportError:
        yield
        return
    with init_empty_weights():
        yield


def _text_classes():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    return CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection


def _text_config(d: dict):
    CLIPTextConfig, _, _ = _text_classes()
    d = {k: v for k, v in d.items() if k not in ("architectures", "model_type")}
    return CLIPTextConfig(**d)


def _finish(m):
    return m.float().eval().requires_grad_(False)


def have_oracles() -> bool:
    """Whether diffusers and transformers can be imported (else only --random-init works)."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def random_metadata(arch: str, model_channels: Optional[int], seed: int = 0) -> Model:
    """A Model without modules: the architecture's (reduced) configs in source["config"], for
    random weights built in fewstep's own modules (torch only)."""
    cfg = arch_config(arch)
    family = cfg["family"]
    if model_channels:
        cfg = reduced(cfg, family, model_channels)
    unet_mod.unet_spec(cfg["unet"])
    return Model(arch, family, None, None, [], [None] * len(ROLES[family]), cfg["scheduler"], cfg["guidance"],
                 cfg["defaults"], {"kind": "random-init", "arch": arch, "model_channels": model_channels,
                                   "seed": seed, "torch_only": True, "config": cfg})


def from_random(arch: str, model_channels: Optional[int], seed: int = 0) -> Model:
    """Random weights of an architecture (full size, or reduced with model_channels) in diffusers'
    and transformers' modules, with their own initialisations. Deterministic for a seed."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    _, CLIPTextModel, CLIPTextModelWithProjection = _text_classes()
    cfg = random_metadata(arch, model_channels, seed).source["config"]
    family = cfg["family"]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(cfg["unet"])
    vae = AutoencoderKL.from_config(cfg["vae"])
    texts = [CLIPTextModel(_text_config(cfg["text_encoder"]))]
    if family == "sdxl":
        texts.append(CLIPTextModelWithProjection(_text_config(cfg["text_encoder_2"])))
    return Model(arch, family, _finish(unet), _finish(vae), [_finish(t) for t in texts], [None] * len(texts),
                 cfg["scheduler"], cfg["guidance"], cfg["defaults"],
                 {"kind": "random-init", "arch": arch, "model_channels": model_channels, "seed": seed})


def _one_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def _pretrained(cls, path: str, what: str):
    """cls.from_pretrained on a local folder, safetensors only; ExportError naming the folder."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ExportError("%s: no config.json (%s)" % (path, what))
    try:
        try:
            return cls.from_pretrained(path, use_safetensors=True, local_files_only=True)
        except (OSError, EnvironmentError):
            if not any(n.endswith(".fp16.safetensors") for n in os.listdir(path)):
                raise
            return cls.from_pretrained(path, use_safetensors=True, local_files_only=True, variant="fp16")
    except ExportError:
        raise
    except Exception as e:  # diffusers/transformers raise OSError, ValueError, RuntimeError, SafetensorError
        raise ExportError("%s: cannot load the %s: %s" % (path, what, _one_line(e))) from None


def from_diffusers_dir(path: str, arch: Optional[str], tokenizer: Optional[str]) -> Model:
    """A diffusers pipeline folder (unet/, vae/, text_encoder/[, text_encoder_2/], tokenizer/[, tokenizer_2/],
    scheduler/). Its config.json files decide the architecture at any width and depth."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    _, CLIPTextModel, CLIPTextModelWithProjection = _text_classes()
    if not os.path.isdir(path):
        raise ExportError("--diffusers %s: not a folder" % path)
    unet = _pretrained(UNet2DConditionModel, os.path.join(path, "unet"), "UNet")
    unet_mod.unet_spec(unet.config)
    ucfg = unet.config
    if ucfg.get("addition_embed_type") == "text_time":
        family = "sdxl"
    elif ucfg.get("use_linear_projection"):
        family = "sd2"
    else:
        family = "sd1"
    sched_file = os.path.join(path, "scheduler", "scheduler_config.json")
    scheduler = None
    if os.path.isfile(sched_file):
        try:
            with open(sched_file, encoding="utf-8") as f:
                scheduler = json.load(f)
        except (OSError, ValueError) as e:
            raise ExportError("%s: %s" % (sched_file, _one_line(e))) from None
    v_pred = bool(scheduler and scheduler.get("prediction_type") == "v_prediction")
    if arch is None and family == "sd2":
        arch = "sd21-v" if v_pred else "sd21"
    arch = choose_arch(family, arch, path)
    cfg = arch_config(arch)
    if scheduler is None:
        scheduler = cfg["scheduler"]
    if arch == "sd21-v":
        scheduler = dict(scheduler, prediction_type="v_prediction")
    vae = _pretrained(AutoencoderKL, os.path.join(path, "vae"), "VAE")
    texts = [_pretrained(CLIPTextModel, os.path.join(path, "text_encoder"), "text encoder")]
    if family == "sdxl":
        texts.append(_pretrained(CLIPTextModelWithProjection, os.path.join(path, "text_encoder_2"),
                                 "second text encoder"))
    toks = []
    for sub in ("tokenizer", "tokenizer_2")[: len(texts)]:
        folder = os.path.join(path, sub)
        toks.append(folder if os.path.isdir(folder) else tokenizer)
    guidance = dict(cfg["guidance"])
    defaults = dict(cfg["defaults"])
    index = os.path.join(path, "model_index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                fz = json.load(f).get("force_zeros_for_empty_prompt")
        except (OSError, ValueError) as e:
            raise ExportError("%s: %s" % (index, _one_line(e))) from None
        if fz is not None and family == "sdxl":
            guidance["force_zeros_for_empty_prompt"] = bool(fz)
    if ucfg.get("time_cond_proj_dim"):
        guidance = dict(guidance, mode="embedded")
        defaults = dict(LCM_DEFAULTS)
    return Model(arch, family, _finish(unet), _finish(vae), [_finish(t) for t in texts], toks, scheduler,
                 guidance, defaults, {"kind": "diffusers", "path": os.path.abspath(path)})


def read_header(path: str) -> Dict[str, tuple]:
    """{key: shape} of a .safetensors file without reading its data; ExportError for a file that
    is missing, not safetensors or truncated."""
    from safetensors import SafetensorError, safe_open
    if not os.path.isfile(path):
        raise ExportError("--checkpoint %s: no such file" % path)
    try:
        with safe_open(path, "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except SafetensorError as e:
        msg = str(e)
        if "not fully covered" in msg or "incomplete" in msg:
            raise ExportError("%s: truncated: its safetensors header lists more data than the file holds" % path) from None
        hint = ("; pickle checkpoints are not read: convert it to .safetensors"
                if path.lower().endswith((".ckpt", ".pt", ".pth", ".bin")) else "")
        raise ExportError("%s: not a safetensors file (%s)%s" % (path, msg.split(":")[-1].strip(), hint)) from None
    if not shapes:
        raise ExportError("%s: holds no tensors" % path)
    return shapes


def _load(path: str, keys) -> Dict[str, torch.Tensor]:
    from safetensors import safe_open
    out = {}
    with safe_open(path, "pt") as f:
        for k in keys:
            t = f.get_tensor(k)
            out[k] = t.float() if t.is_floating_point() else t
    return out


def _load_into(model, state: Dict[str, torch.Tensor], what: str, path: str):
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ExportError("%s: the %s does not convert one to one (missing %s, unexpected %s)" % (
            path, what, result.missing_keys[:3], result.unexpected_keys[:3]))
    return _finish(model)


def from_checkpoint(path: str, arch: Optional[str], tokenizer: Optional[str]) -> Model:
    """A single-file checkpoint in the original LDM layout (SD 1.x, SD 2.x, SDXL base). Keys and
    shapes are checked against the inferred architecture before weights are read; diffusers' own
    converters (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint,
    convert_open_clip_checkpoint) rename them."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    _, CLIPTextModel, CLIPTextModelWithProjection = _text_classes()
    shapes = read_header(path)
    try:
        family = L.detect_family(shapes)
    except ExportError as e:
        raise ExportError("%s %s" % (path, e)) from None
    arch = choose_arch(family, arch, path, v_pred="v_pred" in shapes)
    cfg = arch_config(arch)

    def checked(fn, *a, **k):
        try:
            return fn(*a, **k)
        except ExportError as e:
            raise ExportError("%s: %s" % (path, e)) from None

    ucfg = checked(L.infer_unet_config, shapes, cfg["unet"], family)
    checked(unet_mod.unet_spec, ucfg)
    expected = checked(unet_mod.ldm_layout, ucfg)
    vcfg = checked(L.infer_vae_config, shapes, cfg["vae"])
    with torch.device("meta"):
        vae_meta = AutoencoderKL.from_config(vcfg)
    expected.update(L.vae_to_ldm(vae_meta.state_dict(), len(vcfg["block_out_channels"])))
    optional = (L.VAE + "encoder.", L.VAE + "quant_conv.")
    text_specs = []  # (prefix, kind, config)
    if family == "sd1":
        text_specs.append((L.CLIP_SD1, "clip", checked(L.infer_clip_config, shapes, L.CLIP_SD1, cfg["text_encoder"])))
    elif family == "sd2":
        text_specs.append((L.OPENCLIP_SD2, "openclip-penultimate",
                           checked(L.infer_openclip_config, shapes, L.OPENCLIP_SD2, cfg["text_encoder"], True)))
    else:
        text_specs.append((L.CLIP_XL, "clip", checked(L.infer_clip_config, shapes, L.CLIP_XL, cfg["text_encoder"])))
        text_specs.append((L.OPENCLIP_XL, "openclip",
                           checked(L.infer_openclip_config, shapes, L.OPENCLIP_XL, cfg["text_encoder_2"], False)))
    allowed = []
    for prefix, kind, tcfg in text_specs:
        cls = CLIPTextModelWithProjection if (family == "sdxl" and kind == "openclip") else CLIPTextModel
        with torch.device("meta"):
            meta = cls(_text_config(tcfg)).state_dict()
        if kind == "clip":
            expected.update(L.clip_to_ldm(meta, prefix))
            allowed.append(re.escape(prefix) + r"text_model\.embeddings\.position_ids")
        else:
            expected.update(L.openclip_to_ldm(meta, prefix))
            allowed.append(re.escape(prefix) + r"(logit_scale|attn_mask)")
            if kind == "openclip-penultimate":  # the unused last layer and projection of OpenCLIP-H
                last = tcfg["num_hidden_layers"]
                allowed.append(re.escape(prefix) + r"(text_projection|transformer\.resblocks\.%d\..*)" % last)
    checked(L.check_layout, shapes, expected, optional)
    extra = L.unexpected_keys(shapes, set(expected) | {k for k in shapes if k.startswith(optional)},
                              re.compile("^(" + "|".join(allowed) + ")$"))
    if extra:
        raise ExportError("%s: %d unexpected key(s): %s%s" % (path, len(extra), ", ".join(extra[:4]),
                                                              ", ..." if len(extra) > 4 else ""))
    used = [k for k in shapes if k in expected or k.startswith(optional)]
    tensors = _load(path, used)

    def part(prefix: str) -> Dict[str, torch.Tensor]:
        return {k: v for k, v in tensors.items() if k.startswith(prefix)}

    with _empty_weights():
        unet = UNet2DConditionModel.from_config(ucfg)
    unet = _load_into(unet, sfu.convert_ldm_unet_checkpoint(part(L.UNET), ucfg), "UNet", path)
    vae_sd = sfu.convert_ldm_vae_checkpoint(part(L.VAE), vcfg)
    for k, v in vae_meta.state_dict().items():  # an absent encoder is not exported: zeros keep it loadable
        if k not in vae_sd and (k.startswith("encoder.") or k.startswith("quant_conv.")):
            vae_sd[k] = torch.zeros(v.shape)
    with _empty_weights():
        vae = AutoencoderKL.from_config(vcfg)
    vae = _load_into(vae, vae_sd, "VAE", path)
    texts = []
    for prefix, kind, tcfg in text_specs:
        sub = part(prefix)
        if kind == "clip":
            sd = sfu.convert_ldm_clip_checkpoint(sub)
            with _empty_weights():
                model = CLIPTextModel(_text_config(tcfg))
        else:
            with _empty_weights():
                cls = CLIPTextModelWithProjection if kind == "openclip" else CLIPTextModel
                model = cls(_text_config(tcfg))
            sd = sfu.convert_open_clip_checkpoint(model, sub, prefix=prefix)
        if not hasattr(model, "text_model"):
            sd = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in sd.items()}
        texts.append(_load_into(model, sd, "text encoder " + prefix + "*", path))
    return Model(arch, family, unet, vae, texts, [tokenizer] * len(texts), cfg["scheduler"], cfg["guidance"],
                 cfg["defaults"], {"kind": "checkpoint", "path": os.path.abspath(path)})
