#!/usr/bin/env python3
"""tools/export/lora.py against diffusers' load_lora_weights + fuse_lora (peft backend).

A reduced-width SD 1.5 pipeline (UNet widths 32/64, one layer per block,
CLIP text model of width 64 with 2 layers) on random weights gets a random
LoRA file; diffusers loads and fuses it at lora_scale 0.7, merge_loras merges
the same file into copies of the original UNet and text encoder, and the
UNet's and text encoder's outputs must agree within 1e-4 relative while the
LoRA moves them by more than 1 %. Cases:
  - kohya: UNet (attention Linear layers, 1x1 proj_in/conv_shortcut, 3x3
    ResNet convs: LoCon) and text encoder, alpha != rank;
  - diffusers/PEFT: lora_A/lora_B keys with PEFT LoraConfig metadata
    (lora_alpha, alpha_pattern) for UNet and text encoder;
  - LCM-LoRA layout: kohya keys over diffusers' UNet names, UNet only, the
    LCM-LoRA target modules (attention, ResNet convs, time_emb_proj,
    down/upsampler convs), scale 1.0;
  - kohya keys in the LDM/SGM naming (lora_unet_input_blocks_1_1_...), written
    from the openaimodel UNet's layout: each resolves to the layer diffusers'
    SDXL loader (_maybe_map_sgm_blocks_to_diffusers) picks, and the fused
    result matches. The upsampler of a level without attention
    (output_blocks.N.1.conv in LDM) is checked against the LDM layout only:
    diffusers' mapper calls every ".1" an attention (SDXL never has that case).
Bad files (not safetensors, truncated, keys matching nothing, shape mismatch,
LoHa keys) raise a one-line ExportError naming the file and leave the weights
untouched. Exit 0 pass, 1 fail, 77 skip (diffusers/transformers/peft absent).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import tempfile

from export_test_util import check, need, rel_err, run

need("torch", "diffusers", "transformers", "peft", "safetensors")

import torch  # noqa: E402
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

import lora as L  # noqa: E402
from errors import ExportError  # noqa: E402

TMP = tempfile.mkdtemp(prefix="fewstep-lora-test-")
UNET_TARGETS = ("attentions", "resnets")
LCM_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
               "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")


def base_models():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=64, attention_head_dim=8, sample_size=8).eval()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=77, bos_token_id=998,
                                        eos_token_id=999, pad_token_id=1)).eval()
    return unet, text


BASE_UNET, BASE_TEXT = base_models()


def layers(model, wanted):
    """(path, module) of the Linear/Conv2d layers whose path contains or ends with one of `wanted`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
            and any(w in n for w in wanted)]


def low_rank(module, rank: int, g: torch.Generator):
    """Random (down, up) for a Linear [out, in] or Conv2d [out, in, kh, kw] (LoCon: up is 1x1)."""
    w = module.weight
    down = torch.randn(rank, *w.shape[1:], generator=g) * 0.1
    up = torch.randn(w.shape[0], rank, *([1, 1] if w.dim() == 4 else []), generator=g) * 0.1
    return down, up


def kohya_file(name: str, unet_wanted, text: bool, rank: int, alpha: float) -> str:
    g = torch.Generator().manual_seed(len(name))
    sd = {}
    groups = [("lora_unet_", layers(BASE_UNET, unet_wanted), "")]
    if text:
        groups.append(("lora_te_", layers(BASE_TEXT, ("self_attn", "mlp")), "text_model_"))
    for prefix, found, inner in groups:
        for path, module in found:
            stem = prefix + inner + path.replace(".", "_")
            sd[stem + ".lora_down.weight"], sd[stem + ".lora_up.weight"] = low_rank(module, rank, g)
            sd[stem + ".alpha"] = torch.tensor(alpha)
    out = os.path.join(TMP, name)
    save_file(sd, out)
    return out


def peft_file(name: str) -> str:
    g = torch.Generator().manual_seed(7)
    sd = {}
    for path, module in layers(BASE_UNET, UNET_TARGETS):
        sd[f"unet.{path}.lora_A.weight"], sd[f"unet.{path}.lora_B.weight"] = low_rank(module, 4, g)
    for path, module in layers(BASE_TEXT, ("self_attn", "mlp")):
        key = f"text_encoder.text_model.{path}"  # the layout saved with transformers 4
        sd[f"{key}.lora_A.weight"], sd[f"{key}.lora_B.weight"] = low_rank(module, 4, g)
    meta = {"unet.r": 4, "unet.lora_alpha": 8, "unet.alpha_pattern": {"conv1": 2},
            "unet.target_modules": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                                    "ff.net.2", "conv1", "conv2", "conv_shortcut", "time_emb_proj"],
            "text_encoder.r": 4, "text_encoder.lora_alpha": 2, "text_encoder.alpha_pattern": {"mlp.fc1": 6},
            "text_encoder.target_modules": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]}
    out = os.path.join(TMP, name)
    save_file(sd, out, metadata={"format": "pt", "lora_adapter_metadata": json.dumps(meta)})
    return out


def outputs(unet, text):
    g = torch.Generator().manual_seed(3)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 7, 64, generator=g)
    ids = torch.randint(0, 998, (2, 7), generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([10.0, 700.0]), ctx).sample, text(ids).last_hidden_state


def compare_with_diffusers(path: str, scale: float, text_lora: bool, sgm: bool = False) -> None:
    unet, text = copy.deepcopy(BASE_UNET), copy.deepcopy(BASE_TEXT)
    pipe = StableDiffusionPipeline(vae=AutoencoderKL(block_out_channels=[8], norm_num_groups=8), text_encoder=text,
                                   tokenizer=None, unet=unet, scheduler=DDIMScheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    if sgm:  # only diffusers' SDXL loader maps LDM block names (it passes the UNet config)
        from diffusers import StableDiffusionXLPipeline
        state, alphas = StableDiffusionXLPipeline.lora_state_dict(path, unet_config=unet.config)
        pipe.load_lora_into_unet(state, alphas, unet=pipe.unet, _pipeline=pipe)
    else:
        pipe.load_lora_weights(path)
    pipe.fuse_lora(lora_scale=scale)
    ref_unet, ref_text = outputs(pipe.unet, pipe.text_encoder)
    mine_unet, mine_text = copy.deepcopy(BASE_UNET), copy.deepcopy(BASE_TEXT)
    count = L.merge_loras(mine_unet, [mine_text], [(path, scale)])
    got_unet, got_text = outputs(mine_unet, mine_text)
    base_unet, base_text = outputs(BASE_UNET, BASE_TEXT)
    name = os.path.basename(path)
    check(count > 0, f"{name}: nothing merged")
    err_u, err_t = rel_err(got_unet, ref_unet), rel_err(got_text, ref_text)
    check(err_u < 1e-4 and err_t < 1e-4, f"{name}: relative errors UNet {err_u:.2e}, text {err_t:.2e}")
    check(rel_err(base_unet, ref_unet) > 1e-2, f"{name}: the LoRA does not change the UNet")
    moved_text = rel_err(base_text, ref_text)
    check(moved_text > 1e-2 if text_lora else moved_text == 0, f"{name}: text encoder moved by {moved_text:.2e}")


def test_kohya():
    compare_with_diffusers(kohya_file("kohya.safetensors", UNET_TARGETS, True, rank=4, alpha=2.0), 0.7, True)


def test_peft_with_metadata():
    compare_with_diffusers(peft_file("peft.safetensors"), 0.7, True)


def test_lcm_lora_layout():
    path = kohya_file("lcm_lora.safetensors", LCM_TARGETS, False, rank=8, alpha=8.0)
    names = [n for n, _ in layers(BASE_UNET, LCM_TARGETS)]
    check(any("downsamplers" in n for n in names) and any("upsamplers" in n for n in names)
          and any("conv_shortcut" in n for n in names), "the small UNet lacks sampler/shortcut convs")
    compare_with_diffusers(path, 1.0, False)


def test_second_text_encoder():
    """lora_te2_ keys (SDXL's text_encoder_2, with projection) change only that encoder, by exactly
    scale * (alpha / rank) * up @ down (LoRA, Hu et al. 2021, eq. 3), in float32 and in float16."""
    from transformers import CLIPTextModelWithProjection
    for dtype, tol in ((torch.float32, 1e-6), (torch.float16, 1e-3)):
        te1 = copy.deepcopy(BASE_TEXT).to(dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64,
                                                         num_hidden_layers=2, num_attention_heads=2,
                                                         projection_dim=16)).to(dtype)
        before1, before2 = copy.deepcopy(te1.state_dict()), copy.deepcopy(te2.state_dict())
        g = torch.Generator().manual_seed(11)
        down, up = torch.randn(3, 32, generator=g), torch.randn(16, 3, generator=g)
        down2, up2 = torch.randn(3, 32, generator=g), torch.randn(32, 3, generator=g)
        path = os.path.join(TMP, "te2.safetensors")
        save_file({"lora_te2_text_projection.lora_down.weight": down, "lora_te2_text_projection.lora_up.weight": up,
                   "lora_te2_text_projection.alpha": torch.tensor(1.5),
                   "lora_te2_text_model_encoder_layers_1_self_attn_v_proj.lora_down.weight": down2,
                   "lora_te2_text_model_encoder_layers_1_self_attn_v_proj.lora_up.weight": up2}, path)
        check(L.merge_loras(copy.deepcopy(BASE_UNET), [te1, te2], [(path, 0.5)]) == 2, "two layers expected")
        after = te2.state_dict()
        for key, delta in (("text_projection.weight", 0.5 * 1.5 / 3 * up @ down),
                           ("text_model.encoder.layers.1.self_attn.v_proj.weight", 0.5 * up2 @ down2)):
            got = after[key].float() - before2[key].float()
            check(rel_err(got, delta) < tol, f"{dtype} {key}: relative error {rel_err(got, delta):.2e}")
        changed = [k for k in after if not torch.equal(after[k], before2[k])]
        check(len(changed) == 2, f"{dtype}: changed {changed}")
        check(all(torch.equal(v, before1[k]) for k, v in te1.state_dict().items()), "the first encoder changed")


def sgm_stems() -> dict:
    """kohya stem -> LDM module path for the test UNet, from the openaimodel layout: input_blocks[0] =
    conv_in; per down level, one [ResBlock, SpatialTransformer?] per layer, then [Downsample(op)];
    middle_block = [ResBlock, SpatialTransformer, ResBlock]; per up level, layers_per_block + 1 of
    [ResBlock, SpatialTransformer?, Upsample(conv) in the last]; ResBlock convs in_layers.2,
    out_layers.3, emb_layers.1 and skip_connection (1x1, where the width changes)."""
    attn = ["proj_in", "proj_out"] + [f"transformer_blocks.0.{a}.{p}" for a in ("attn1", "attn2")
                                      for p in ("to_q", "to_k", "to_v", "to_out.0")]
    attn += ["transformer_blocks.0.ff.net.0.proj", "transformer_blocks.0.ff.net.2"]
    res = ["in_layers.2", "emb_layers.1", "out_layers.3"]
    names = ["input_blocks.0.0", "time_embed.0", "time_embed.2", "out.2", "input_blocks.2.0.op"]
    names += [f"input_blocks.1.0.{r}" for r in res] + [f"input_blocks.1.1.{a}" for a in attn]
    names += [f"input_blocks.3.0.{r}" for r in res + ["skip_connection"]]
    names += [f"middle_block.{i}.{r}" for i in (0, 2) for r in res] + [f"middle_block.1.{a}" for a in attn]
    names += [f"output_blocks.{i}.0.{r}" for i in range(4) for r in res + ["skip_connection"]]
    names += [f"output_blocks.{i}.1.{a}" for i in (2, 3) for a in attn]
    return {"lora_unet_" + n.replace(".", "_"): n for n in names}


def test_kohya_sgm():
    from diffusers import StableDiffusionXLPipeline
    mine = {L.sgm_path(n, BASE_UNET): n for n, _ in layers(BASE_UNET, ("",))}
    check(mine.get("output_blocks.1.1.conv") == "up_blocks.0.upsamplers.0.conv", "upsampler of a plain level")
    modules = dict(BASE_UNET.named_modules())
    g = torch.Generator().manual_seed(5)
    sd = {}
    for stem, ldm in sgm_stems().items():
        one = {stem + ".lora_down.weight": torch.zeros(1, 1), stem + ".lora_up.weight": torch.zeros(1, 1)}
        converted, _ = StableDiffusionXLPipeline.lora_state_dict(one, unet_config=BASE_UNET.config)
        (down,) = [k for k in converted if k.endswith("down.weight")]
        target, _ = L._peft_target(down[len("unet."):], "unet")
        check(mine.get(ldm) == target, f"{ldm}: ours {mine.get(ldm)}, diffusers {target}")
        sd[stem + ".lora_down.weight"], sd[stem + ".lora_up.weight"] = low_rank(modules[target], 4, g)
        sd[stem + ".alpha"] = torch.tensor(2.0)
    path = os.path.join(TMP, "sgm.safetensors")
    save_file(sd, path)
    compare_with_diffusers(path, 0.7, False, sgm=True)


def expect_error(path: str, *fragments: str) -> None:
    unet, text = copy.deepcopy(BASE_UNET), copy.deepcopy(BASE_TEXT)
    good = kohya_file("good.safetensors", ("attn1.to_q",), False, rank=2, alpha=1.0)
    try:
        L.merge_loras(unet, [text], [(good, 1.0), (path, 1.0)])
    except ExportError as e:
        msg = str(e)
        check("\n" not in msg and path in msg, f"not one line naming the file: {msg!r}")
        for f in fragments:
            check(f in msg, f"'{f}' missing from: {msg}")
    else:
        raise AssertionError(f"{path}: accepted")
    same = all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), BASE_UNET.state_dict().values()))
    check(same, f"{path}: weights changed although the merge failed")


def test_bad_files():
    garbage = os.path.join(TMP, "garbage.safetensors")
    with open(garbage, "wb") as f:
        f.write(b"\x89PNG not a safetensors file at all")
    expect_error(garbage, "not a readable safetensors")
    good = kohya_file("whole.safetensors", UNET_TARGETS, False, rank=4, alpha=4.0)
    truncated = os.path.join(TMP, "truncated.safetensors")
    with open(good, "rb") as src, open(truncated, "wb") as dst:
        data = src.read()
        dst.write(data[: len(data) // 2])
    expect_error(truncated, "safetensors")
    g = torch.Generator().manual_seed(0)
    nomatch = os.path.join(TMP, "nomatch.safetensors")
    save_file({f"lora_unet_down_blocks_9_attentions_0_proj_{i}.lora_down.weight": torch.randn(2, 8, generator=g)
               for i in range(6)}, nomatch)
    expect_error(nomatch, "match no layer", "lora_unet_down_blocks_9_attentions_0_proj_0", "+2 more")
    shape = os.path.join(TMP, "shape.safetensors")
    stem = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({stem + ".lora_down.weight": torch.randn(4, 48), stem + ".lora_up.weight": torch.randn(32, 4)}, shape)
    expect_error(shape, "shape mismatch", stem, "[4, 48]")
    loha = os.path.join(TMP, "loha.safetensors")
    save_file({stem + ".hada_w1_a": torch.randn(32, 4), stem + ".hada_w1_b": torch.randn(4, 32)}, loha)
    expect_error(loha, "unsupported adapter type")
    other = os.path.join(TMP, "other.safetensors")
    save_file({"model.diffusion_model.out.2.weight": torch.randn(4, 4)}, other)
    expect_error(other, "no kohya")


if __name__ == "__main__":
    try:
        code = run([test_kohya, test_peft_with_metadata, test_lcm_lora_layout, test_kohya_sgm,
                    test_second_text_encoder, test_bad_files])
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(code)
