#!/usr/bin/env python3
"""The block-wise UNet of tools/export/unet.py against diffusers' UNet2DConditionModel.

- Outputs: SD 1.5, SD 2.x, SDXL and an LCM UNet (timestep_cond) at reduced width with diffusers'
  random initialisation, fp32, after torch.jit.script + save + load, at batch 1, 2, 4, square and
  non-square: within 1e-4 relative (L2) of diffusers on the same inputs. A perturbed weight must
  break that (the comparison can fail).
- Parameter counts of the full-size shipped configs on the meta device (no weights): SD 1.5
  859,520,964; SD 2.1 865,910,724; SDXL base 2,567,463,684 (issue 13, from diffusers' models).
- Key map on the meta device: the module's LDM names are the original checkpoints' (686 tensors for
  SD 1.5 and 2.1, 1,680 for SDXL), and diffusers' own LDM converter sends them one to one onto
  UNet2DConditionModel's keys with equal shapes.

Run: .venv/bin/python tests/export/test_unet_export.py (exit 0 pass, 1 fail, 77 skip without diffusers).
"""
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_test_util as T  # noqa: E402  (puts tools/export on sys.path)

T.need("diffusers", "transformers")

import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

import sources  # noqa: E402
import unet as U  # noqa: E402

RTOL = 1e-4
SIZES = [(1, 16, 16), (2, 16, 24), (4, 24, 8)]  # batch, latent H, W: multiples of 8
PARAMS = {"sd15": 859_520_964, "sd21": 865_910_724, "sdxl": 2_567_463_684}
LDM_TENSORS = {"sd15": 686, "sd21": 686, "sdxl": 1680}
# Keys and shapes as the original checkpoints spell them (v1-5-pruned, v2-1_768-ema-pruned,
# sd_xl_base_1.0), so that a naming mistake shared by the module and the converter still fails.
KNOWN = {
    "sd15": {"time_embed.0.weight": (1280, 320), "input_blocks.1.0.in_layers.0.weight": (320,),
             "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1), "input_blocks.3.0.op.weight": (320, 320, 3, 3),
             "input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
             "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
             "middle_block.1.transformer_blocks.0.attn1.to_out.0.bias": (1280,),
             "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3), "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
             "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight": (2560, 320),
             "output_blocks.11.1.transformer_blocks.0.ff.net.2.weight": (320, 1280), "out.2.weight": (4, 320, 3, 3)},
    "sd21": {"input_blocks.1.1.proj_in.weight": (320, 320),
             "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
             "output_blocks.8.2.conv.weight": (640, 640, 3, 3)},
    "sdxl": {"label_emb.0.0.weight": (1280, 2816), "label_emb.0.2.weight": (1280, 1280),
             "input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
             "input_blocks.4.1.transformer_blocks.1.norm3.weight": (640,),
             "output_blocks.2.2.conv.weight": (1280, 1280, 3, 3), "output_blocks.5.2.conv.weight": (640, 640, 3, 3),
             "middle_block.1.transformer_blocks.9.ff.net.2.bias": (1280,), "out.0.weight": (320,)},
}


def diffusers_unet(arch: str, seed: int, **override) -> UNet2DConditionModel:
    """A reduced-width UNet2DConditionModel of `arch` (model_channels 32) with diffusers' random init."""
    cfg = sources.arch_config(arch)
    cfg = sources.reduced(cfg, cfg["family"], 32)["unet"]
    cfg.update(override)
    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(cfg).eval()


def scripted_copy(model):
    """from_diffusers -> torch.jit.script -> torch.jit.save -> torch.jit.load."""
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(U.from_diffusers(model)), buf)
    buf.seek(0)
    return torch.jit.load(buf)


def compare(model, seed: int):
    """Worst relative error of the scripted package UNet (block-wise and forward) over SIZES, and the
    loaded module."""
    loaded = scripted_copy(model)
    worst = 0.0
    g = torch.Generator().manual_seed(seed)
    for b, h, w in SIZES:
        args, kwargs = U.example_inputs(model.config, b, h, w, g)
        with torch.no_grad():
            want = model(*args[:3], **kwargs).sample
            got = U.run_blockwise(loaded, *args)
            if b == 1:  # the monolithic forward is the same computation
                worst = max(worst, T.rel_err(loaded(*args), want))
        assert want.abs().max() > 0
        worst = max(worst, T.rel_err(got, want))
    return worst, loaded


def _check_arch(arch: str, seed: int, **override):
    model = diffusers_unet(arch, seed, **override)
    err, loaded = compare(model, seed)
    print("  %s %s: relative error %.2e" % (arch, override or "", err))
    assert err <= RTOL, "%s: %.3g > %g" % (arch, err, RTOL)
    return model, loaded


def test_sd15():
    _check_arch("sd15", 1)


def test_sd2_linear_projection():
    model, loaded = _check_arch("sd21", 2)
    assert model.config.use_linear_projection


def test_sdxl_text_time():
    model, loaded = _check_arch("sdxl", 3)
    assert list(model.config.transformer_layers_per_block) == [1, 2, 2]
    assert model.config.down_block_types[0] == "DownBlock2D"
    # an SDXL UNet refuses to run without its added conditioning
    try:
        loaded.time_embed(torch.tensor([1.0]), torch.zeros(0), torch.zeros(0))
    except Exception as e:  # torch.jit.Error from the scripted raise
        assert "needs added_cond" in str(e)
    else:
        raise AssertionError("SDXL time_embed accepted an empty added_cond")


def test_lcm_timestep_cond():
    model, loaded = _check_arch("sd15", 4, time_cond_proj_dim=256)
    # the guidance embedding changes the output: timestep_cond is not ignored
    x, t, ctx = torch.randn(1, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 5, 64)
    with torch.no_grad():
        a = loaded(x, t, ctx, torch.zeros(1, 256), None)
        b = loaded(x, t, ctx, torch.ones(1, 256), None)
    assert T.rel_err(a, b) > 1e-3


def test_two_levels_one_layer():
    """A diffusers-made UNet of another depth: 2 levels, layers_per_block 1."""
    _check_arch("sd15", 5, block_out_channels=[32, 64], layers_per_block=1,
                down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])


def test_comparison_can_fail():
    model = diffusers_unet("sd15", 6)
    loaded = scripted_copy(model)
    dict(loaded.named_parameters())["input_blocks.1.layers.1.transformer_blocks.0.attn1.to_q.weight"].data.mul_(1.5)
    x, t, ctx = torch.randn(2, 4, 16, 16), torch.tensor([10.0, 900.0]), torch.randn(2, 7, 64)
    with torch.no_grad():
        err = T.rel_err(U.run_blockwise(loaded, x, t, ctx), model(x, t, ctx).sample)
    assert err > RTOL, "a changed attention weight went unnoticed (%.3g)" % err


def test_contract_and_sdpa():
    """Every block is a `layers` sequence; time_embed takes (t, timestep_cond, added_cond); attention
    is F.scaled_dot_product_attention (what fewstep's rewrite pass routes to fewstep::attention)."""
    loaded = scripted_copy(diffusers_unet("sdxl", 7))
    assert len(loaded.time_embed.forward.schema.arguments) == 4  # self + 3
    names = [n for n, _ in loaded.named_modules()]
    blocks = [n for n in names if n.count(".") == 1 and n.startswith(("input_blocks.", "output_blocks."))]
    assert blocks and all(n + ".layers" in names for n in blocks + ["middle_block"])
    attn = dict(loaded.named_modules())["middle_block.layers.1.transformer_blocks.0.attn2"]
    graph = str(attn.inlined_graph)
    assert "aten::scaled_dot_product_attention" in graph and "aten::softmax" not in graph


def test_param_counts_meta():
    for arch, want in PARAMS.items():
        with torch.device("meta"):
            m = U.UNet(sources.arch_config(arch)["unet"])
        assert all(p.is_meta for p in m.parameters())
        got = sum(p.numel() for p in m.parameters())
        assert got == want, "%s: %d parameters, expected %d" % (arch, got, want)


def test_ldm_key_map_meta():
    for arch, n in LDM_TENSORS.items():
        cfg = sources.arch_config(arch)["unet"]
        layout = U.ldm_layout(cfg)
        assert len(layout) == n, "%s: %d LDM tensors, expected %d" % (arch, len(layout), n)
        for key, shape in KNOWN[arch].items():
            assert tuple(layout[U.LDM_UNET_PREFIX + key]) == shape, "%s %s" % (arch, key)
        with torch.device("meta"):
            mine = U.UNet(cfg).state_dict()
            theirs = UNet2DConditionModel.from_config(cfg).state_dict()
        kmap = U.diffusers_key_map(cfg)
        assert set(kmap) == set(theirs), "%s: diffusers keys left over" % arch
        assert set(kmap.values()) == set(mine) and len(set(kmap.values())) == len(kmap) == n
        assert all(theirs[d].shape == mine[m].shape for d, m in kmap.items())
        assert all(U.ldm_to_module_key(U.module_to_ldm_key(k)) == k for k in mine)


def test_config_inference_full_size():
    """The UNet config read back from the full-size LDM layouts (meta) is the shipped one."""
    import ldm_layout as L
    text = {"sd15": L.CLIP_SD1 + "text_model.x", "sd21": L.OPENCLIP_SD2 + "x", "sdxl": L.OPENCLIP_XL + "x"}
    family = {"sd15": "sd1", "sd21": "sd2", "sdxl": "sdxl"}
    for arch in PARAMS:
        cfg = sources.arch_config(arch)["unet"]
        shapes = {k: tuple(v) for k, v in U.ldm_layout(cfg).items()}
        shapes[text[arch]] = (1,)
        assert L.detect_family(shapes) == family[arch]
        inferred = ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
                    "cross_attention_dim", "transformer_layers_per_block", "in_channels", "out_channels",
                    "norm_num_groups", "projection_class_embeddings_input_dim", "attention_head_dim")
        base = {k: v for k, v in cfg.items() if k not in inferred or (arch == "sd15" and k == "attention_head_dim")}
        got = L.infer_unet_config(shapes, base, family[arch])
        assert U.unet_spec(got) == U.unet_spec(cfg), arch


TESTS = [test_sd15, test_sd2_linear_projection, test_sdxl_text_time, test_lcm_timestep_cond,
         test_two_levels_one_layer, test_comparison_can_fail, test_contract_and_sdpa, test_param_counts_meta,
         test_ldm_key_map_meta, test_config_inference_full_size]

if __name__ == "__main__":
    sys.exit(T.run(TESTS))
