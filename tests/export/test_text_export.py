#!/usr/bin/env python3
"""tools/export/text_encoder.py against transformers' CLIP text models on random weights.

Each role's scripted module (saved and reloaded through TorchScript) must give
what diffusers' pipelines take from transformers' model on the same ids,
within 1e-4 relative, at reduced width (hidden 64, 4 heads, 3 layers):
  sd15 / sd2: last_hidden_state (all layers + final LayerNorm), QuickGELU / GELU;
  sdxl_te1:   hidden_states[-2];
  sdxl_te2:   (hidden_states[-2], text_embeds), with the legacy eos_token_id = 2
              (argmax pooling) and with a real eos id placed so that the two
              pooling rules pick different tokens.
Whole text conditioning against the pipelines' own encode_prompt (diffusers'
StableDiffusionPipeline for sd15 and sd2, StableDiffusionXLPipeline for the
concatenated context and pooled embedding): CLIPTokenizer built from the files
tokenizer_files.py writes, with each pipeline's pad token, then the scripted
modules on the ids fewstep would build (tokens padded with the returned pad_id).
The LDM key map and the CLIP ViT-L/14 parameter count (123,060,480) are
checked on the meta device.
Usage: test_text_export.py [bpe_simple_vocab_16e6.txt.gz]  (for the pipeline test)
Exit 0 pass, 1 fail, 77 skip (transformers or diffusers absent).
"""
from __future__ import annotations

import os
import sys

from export_test_util import check, clip_merges_file, need, rel_err, run, scripted

need("torch", "transformers", "diffusers")

import torch  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

import text_encoder as te  # noqa: E402
from errors import ExportError  # noqa: E402

VOCAB, BOS, EOS = 1000, 998, 999
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
              layer_norm_eps=1e-5, eos_token_id=2, bos_token_id=0, pad_token_id=1, projection_dim=768)


def small_config(act: str, eos_token_id: int = 2) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                          num_attention_heads=4, max_position_embeddings=77, hidden_act=act,
                          projection_dim=48, eos_token_id=eos_token_id, bos_token_id=BOS, pad_token_id=1)


def random_model(cls, cfg, seed: int):
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than the default init so that every layer matters
            p.add_(torch.randn_like(p) * 0.05)
    return model


def prompt_ids(length: int, eos: int, pad: int, ends=(9, 30)) -> torch.Tensor:
    """Two rows: BOS, random tokens, `eos` at ends[b], then `pad` (a CLIP-style padded batch)."""
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(1, 900, (2, length), generator=g)
    ids[:, 0] = BOS
    for row, end in enumerate(ends):
        end = min(end, length - 1)
        ids[row, end] = eos
        ids[row, end + 1:] = pad
    return ids


def test_hidden_roles():
    """sd15, sd2 and sdxl_te1 match last_hidden_state / hidden_states[-2]."""
    for role, act in (("sd15", "quick_gelu"), ("sd2", "gelu"), ("sdxl_te1", "quick_gelu")):
        model = random_model(CLIPTextModel, small_config(act), seed=1)
        module = scripted(te.from_transformers(model, role))
        for length, pad in ((77, EOS), (77, 0), (16, EOS)):
            ids = prompt_ids(length, EOS, pad)
            with torch.no_grad():
                out = model(ids, output_hidden_states=True)
                got = module(ids)
            ref = out.hidden_states[-2] if role == "sdxl_te1" else out.last_hidden_state
            check(got.shape == ref.shape, f"{role}: shape {tuple(got.shape)} != {tuple(ref.shape)}")
            err = rel_err(got, ref)
            check(err < 1e-4, f"{role} L={length} pad={pad}: relative error {err:.2e}")
            # the other readings differ, so the comparison can tell roles apart
            other = out.last_hidden_state if role == "sdxl_te1" else out.hidden_states[-2]
            check(rel_err(got, other) > 1e-2, f"{role}: output also matches the other layer")


def test_pooled_role():
    """sdxl_te2: (hidden_states[-2], text_embeds) for both pooling rules of transformers."""
    for eos_token_id in (2, 500):
        model = random_model(CLIPTextModelWithProjection, small_config("gelu", eos_token_id), seed=2)
        module = scripted(te.from_transformers(model, "sdxl_te2"))
        eos = EOS if eos_token_id == 2 else eos_token_id
        for pad in (0, eos):
            ids = prompt_ids(77, eos, pad)
            if eos_token_id != 2:
                ids[:, 40:50] = 950  # a larger id after the end token: argmax would pick it
            with torch.no_grad():
                out = model(ids, output_hidden_states=True)
                hidden, pooled = module(ids)
            err_h = rel_err(hidden, out.hidden_states[-2])
            err_p = rel_err(pooled, out.text_embeds)
            check(pooled.shape == (2, 48), f"pooled shape {tuple(pooled.shape)}")
            check(err_h < 1e-4 and err_p < 1e-4,
                  f"sdxl_te2 eos_token_id={eos_token_id} pad={pad}: errors {err_h:.2e}, {err_p:.2e}")


def test_causal_and_sdpa():
    """Changing a token changes no earlier position; attention is SDPA (a causal call)."""
    model = random_model(CLIPTextModel, small_config("quick_gelu"), seed=3)
    module = torch.jit.script(te.from_transformers(model, "sd15"))
    ids = prompt_ids(20, EOS, EOS)
    changed = ids.clone()
    changed[:, 12] = 7
    with torch.no_grad():
        a, b = module(ids), module(changed)
    check(torch.equal(a[:, :12], b[:, :12]), "a later token changed earlier hidden states")
    check(not torch.allclose(a[:, 12:], b[:, 12:]), "the changed token had no effect")
    graph = str(module.inlined_graph)
    check("aten::scaled_dot_product_attention" in graph, "attention does not call SDPA")


def test_ldm_key_map_and_counts():
    """CLIP ViT-L/14 on the meta device: 123,060,480 parameters; 196 LDM tensors + position_ids map
    one to one onto the sd15 module; sdxl_te1 drops the last layer and the final LayerNorm."""
    with torch.device("meta"):
        ref = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    module = te.build(CLIP_L, "sd15", device="meta")
    n_ref = sum(p.numel() for p in ref.parameters())
    n_mod = sum(p.numel() for p in module.parameters())
    check(n_ref == 123_060_480 and n_mod == 123_060_480, f"parameters: transformers {n_ref}, module {n_mod}")
    # The OpenAI layout inside SD 1.x files: cond_stage_model.transformer.text_model.<transformers key>,
    # plus the position_ids buffer that old transformers versions saved.
    ldm = {te.LDM_PREFIX_SD15 + k: v for k, v in ref.state_dict().items()}
    ldm[te.LDM_PREFIX_SD15 + "embeddings.position_ids"] = torch.empty(1, 77, dtype=torch.int64, device="meta")
    for real in ("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                 "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.bias",
                 "cond_stage_model.transformer.text_model.final_layer_norm.weight"):
        check(real in ldm, f"LDM key {real} missing from the reference layout")
    ldm["model.diffusion_model.out.2.bias"] = torch.empty(4, device="meta")  # other models' keys are ignored
    mapping, dropped, unknown = te.ldm_key_map(ldm, te.LDM_PREFIX_SD15, "sd15", 12)
    mod_state = module.state_dict()
    check(len(ldm) - 1 == 197 and len(mapping) == 196 and len(mod_state) == 196,
          f"sd15: {len(mapping)} mapped, module has {len(mod_state)}")
    check(sorted(mapping.values()) == sorted(mod_state), "sd15: mapping is not one to one onto the module")
    check(dropped == [te.LDM_PREFIX_SD15 + "embeddings.position_ids"] and not unknown, f"{dropped} {unknown}")
    for src, dst in mapping.items():
        check(ldm[src].shape == mod_state[dst].shape, f"{src}: shape {ldm[src].shape} != {mod_state[dst].shape}")
    # SDXL's first encoder: same layout under conditioner.embedders.0.
    ldm1 = {te.LDM_PREFIX_SDXL_TE1 + k[len(te.LDM_PREFIX_SD15):]: v for k, v in ldm.items()
            if k.startswith(te.LDM_PREFIX_SD15)}
    te1 = te.build(CLIP_L, "sdxl_te1", device="meta").state_dict()
    mapping, dropped, unknown = te.ldm_key_map(ldm1, te.LDM_PREFIX_SDXL_TE1, "sdxl_te1", 12)
    check(sorted(mapping.values()) == sorted(te1) and len(te1) == 2 + 11 * 16, "sdxl_te1: mapping != module")
    check(len(dropped) == 1 + 16 + 2 and not unknown, f"sdxl_te1: dropped {len(dropped)}, unknown {unknown}")


def test_errors():
    """Bad roles and a pooled role without a projection are one-line ExportErrors."""
    model = random_model(CLIPTextModel, small_config("gelu"), seed=4)
    for role in ("sd3", "sdxl_te2"):
        try:
            te.from_transformers(model, role)
        except ExportError as e:
            check("\n" not in str(e) and str(e), f"message not one line: {e!r}")
        else:
            raise AssertionError(f"role {role} accepted")
    try:
        te.build(dict(small_config("relu").to_dict()), "sd15")
    except ExportError as e:
        check("hidden_act" in str(e), str(e))
    else:
        raise AssertionError("hidden_act relu accepted")


def test_pipeline_encode_prompt():
    """fewstep's conditioning (ids padded with the manifest pad_id, scripted modules, SDXL's concat and
    pooled output) equals diffusers' encode_prompt for SD 1.5, SD 2.x and SDXL at width 32-64."""
    import tempfile

    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    import tokenizer_files as tf
    gz = clip_merges_file(sys.argv[1] if len(sys.argv) > 1 else None)
    prompts = ["a photo of a cat", "a red apple on a wooden table, 4k, highly detailed"]

    def clip(cls, act, width, seed):
        cfg = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                             num_attention_heads=2, max_position_embeddings=77, hidden_act=act,
                             projection_dim=width, bos_token_id=0, eos_token_id=2, pad_token_id=1)
        return random_model(cls, cfg, seed)

    with tempfile.TemporaryDirectory() as pkg:
        tok, ids = {}, {}
        for role in te.ROLES:
            entry = tf.write_tokenizer(os.path.join(pkg, role), gz, pad_token=tf.PAD_TOKEN_BY_ROLE[role])
            tok[role] = CLIPTokenizer(vocab=os.path.join(pkg, entry["vocab"]), merges=os.path.join(pkg, entry["merges"]),
                                      pad_token=tf.PAD_TOKEN_BY_ROLE[role], model_max_length=77)
            # what the runtime builds: BOS, tokens, EOS, then the manifest's pad_id up to 77
            rows = [tok[role](p)["input_ids"] for p in prompts]
            ids[role] = torch.tensor([r + [entry["pad_id"]] * (77 - len(r)) for r in rows])
        for role, act, seed in (("sd15", "quick_gelu", 5), ("sd2", "gelu", 6)):
            model = clip(CLIPTextModel, act, 64, seed)
            pipe = StableDiffusionPipeline(vae=None, text_encoder=model, tokenizer=tok[role], unet=None, scheduler=None,
                                           safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            ref, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
            with torch.no_grad():
                got = scripted(te.from_transformers(model, role))(ids[role])
            check(rel_err(got, ref) < 1e-4, f"{role}: relative error {rel_err(got, ref):.2e} against encode_prompt")
        te1 = clip(CLIPTextModel, "quick_gelu", 32, 7)
        te2 = clip(CLIPTextModelWithProjection, "gelu", 64, 8)
        pipe = StableDiffusionXLPipeline(vae=None, text_encoder=te1, text_encoder_2=te2, tokenizer=tok["sdxl_te1"],
                                         tokenizer_2=tok["sdxl_te2"], unet=None, scheduler=None)
        ref, _, ref_pooled, _ = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=False)
        with torch.no_grad():
            hidden1 = scripted(te.from_transformers(te1, "sdxl_te1"))(ids["sdxl_te1"])
            hidden2, pooled = scripted(te.from_transformers(te2, "sdxl_te2"))(ids["sdxl_te2"])
        context = torch.cat([hidden1, hidden2], dim=-1)  # the manifest contract: SDXL context = cat(te1, te2)
        check(context.shape == (2, 77, 96), f"SDXL context {tuple(context.shape)}")
        check(rel_err(context, ref) < 1e-4 and rel_err(pooled, ref_pooled) < 1e-4,
              f"sdxl: errors {rel_err(context, ref):.2e}, pooled {rel_err(pooled, ref_pooled):.2e}")
        # the pad id matters: OpenCLIP's ids padded with the end token give another context
        wrong = ids["sdxl_te2"].masked_fill(ids["sdxl_te2"] == 0, 49407)
        with torch.no_grad():
            wrong_hidden, _ = te.from_transformers(te2, "sdxl_te2")(wrong)
        check(rel_err(wrong_hidden, hidden2) > 1e-3, "padding with 49407 instead of 0 changed nothing")


if __name__ == "__main__":
    sys.exit(run([test_hidden_roles, test_pooled_role, test_causal_and_sdpa, test_ldm_key_map_and_counts,
                  test_errors, test_pipeline_encode_prompt]))
