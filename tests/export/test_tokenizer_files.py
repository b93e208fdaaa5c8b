#!/usr/bin/env python3
"""tools/export/tokenizer_files.py against transformers' CLIPTokenizer.

Usage: test_tokenizer_files.py [bpe_simple_vocab_16e6.txt.gz]
(default: ../shared/data/clip/..., else the copy open-clip-torch ships).

  - vocab.json / merges.txt derived from OpenAI's merges file equal those of
    the independent oracle tools/oracles/clip_tokenizer_ids.py;
  - CLIPTokenizer built from the written files with each pipeline's pad token
    ("<|endoftext|>" for CLIP-L, "!" for OpenCLIP as diffusers' SD 2.x and SDXL
    tokenizer_2 configs say) pads with exactly the returned pad_id (49407 / 0)
    and encodes "a photo of a cat" as CLIP does;
  - a diffusers tokenizer/ folder is copied with the pad token of its own config;
  - bad sources give one-line ExportErrors.
Exit 0 pass, 1 fail, 77 skip (transformers or the merges file absent).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile

from export_test_util import check, clip_merges_file, need, run

need("transformers")

from transformers import CLIPTokenizer  # noqa: E402

import tokenizer_files as tf  # noqa: E402
from errors import ExportError  # noqa: E402

from clip_tokenizer_ids import write_hf_files  # noqa: E402  (tools/oracles, an independent derivation)

TMP = tempfile.mkdtemp(prefix="fewstep-tokenizer-test-")
CAT = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat" in CLIP's vocabulary


GZ = clip_merges_file(sys.argv[1] if len(sys.argv) > 1 else None)


def padded(tokenizer: CLIPTokenizer, text: str = "a photo of a cat"):
    return tokenizer(text, padding="max_length", max_length=77, truncation=True)["input_ids"]


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_files_match_oracle():
    entry = tf.write_tokenizer(os.path.join(TMP, "pkg", "tokenizer"), GZ)
    check(entry == {"vocab": "tokenizer/vocab.json", "merges": "tokenizer/merges.txt", "pad_id": 49407}, str(entry))
    oracle = os.path.join(TMP, "oracle")
    os.makedirs(oracle)
    vocab, merges = write_hf_files(GZ, oracle)
    pkg = os.path.join(TMP, "pkg")
    check(json.loads(read(vocab)) == json.loads(read(os.path.join(pkg, entry["vocab"]))), "vocab.json differs")
    check(read(merges) == read(os.path.join(pkg, entry["merges"])), "merges.txt differs")
    check(sorted(os.listdir(os.path.join(pkg, "tokenizer"))) == ["merges.txt", "vocab.json"], "stray files left")


def test_pad_ids_against_clip_tokenizer():
    pkg = os.path.join(TMP, "pads")
    for role, pad_id in (("sd15", 49407), ("sd2", 0), ("sdxl_te1", 49407), ("sdxl_te2", 0)):
        pad = tf.PAD_TOKEN_BY_ROLE[role]
        entry = tf.write_tokenizer(os.path.join(pkg, f"tokenizer_{role}"), GZ, pad_token=pad)
        check(entry["pad_id"] == pad_id, f"{role}: pad_id {entry['pad_id']}")
        tok = CLIPTokenizer(vocab=os.path.join(pkg, entry["vocab"]), merges=os.path.join(pkg, entry["merges"]),
                            pad_token=pad)
        ids = padded(tok)
        check(ids[:7] == CAT and ids[7:] == [entry["pad_id"]] * 70, f"{role}: CLIPTokenizer gives {ids[:10]}")


def test_diffusers_folder():
    """The pad token of a tokenizer folder, with transformers' precedence: SD 2.x's layout says
    "<|endoftext|>" in tokenizer_config.json and "!" in special_tokens_map.json; SD 1.5's says
    "<|endoftext|>" in both; a dict-valued token in special_tokens_map.json."""
    added = {"__type": "AddedToken", "content": "<|startoftext|>", "lstrip": False, "normalized": True,
             "rstrip": False, "single_word": False}
    sd2_config = {"pad_token": "<|endoftext|>", "bos_token": added, "model_max_length": 77}
    cases = [({"tokenizer_config.json": sd2_config, "special_tokens_map.json": {"pad_token": "!"}}, 0),
             ({"tokenizer_config.json": dict(sd2_config, pad_token="<|endoftext|>"),
               "special_tokens_map.json": {"pad_token": "<|endoftext|>"}}, 49407),
             ({"special_tokens_map.json": {"pad_token": {"content": "!", "lstrip": False, "normalized": False,
                                                         "rstrip": False, "single_word": False}}}, 0)]
    for i, (configs, pad_id) in enumerate(cases):
        folder = os.path.join(TMP, f"diffusers{i}", "tokenizer")
        os.makedirs(folder)
        tf.write_tokenizer(folder, GZ)
        for name, cfg in configs.items():
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                json.dump(cfg, f)
        entry = tf.write_tokenizer(os.path.join(TMP, f"pkg{i}", "tokenizer_2"), folder)
        check(entry["pad_id"] == pad_id and entry["vocab"] == "tokenizer_2/vocab.json", str(entry))
        check(read(os.path.join(folder, "merges.txt")) == read(os.path.join(TMP, f"pkg{i}", entry["merges"])),
              "merges not copied")
        ids = padded(CLIPTokenizer.from_pretrained(folder))
        check(ids[:7] == CAT and ids[7:] == [pad_id] * 70, f"folder {i}: transformers pads with {ids[7]}, ours {pad_id}")


def test_default_source():
    try:
        path = tf.default_bpe_path()
    except ExportError as e:
        check(os.environ.get("FEWSTEP_REQUIRE_ORACLES") != "1", f"open-clip-torch missing: {e}")
        print(f"  (open-clip-torch absent: {e})")
        return
    with gzip.open(path) as a, gzip.open(GZ) as b:
        check(a.read() == b.read(), f"{path} differs from {GZ}")


def test_errors():
    bad_gz = os.path.join(TMP, "short.txt.gz")
    with gzip.open(bad_gz, "wt") as f:
        f.write("#version: 0.2\na b\n")
    empty = os.path.join(TMP, "empty_folder")
    os.makedirs(empty)
    cases = [(os.path.join(TMP, "missing"), None, "no such"), (bad_gz, None, "48894 merge lines"),
             (empty, None, "lacks vocab.json"), (GZ, "<|pad|>", "not in the vocabulary"),
             (os.path.join(TMP, "pkg", "tokenizer", "vocab.json"), None, "not a readable gzip")]
    for source, pad, fragment in cases:
        dst = os.path.join(TMP, "err", "tokenizer")
        try:
            tf.write_tokenizer(dst, source, pad_token=pad)
        except ExportError as e:
            check(fragment in str(e) and "\n" not in str(e), f"{source}: {e}")
        else:
            raise AssertionError(f"{source}: accepted")
        check(not os.path.exists(dst), f"{source}: output written although the source is bad")


if __name__ == "__main__":
    try:
        code = run([test_files_match_oracle, test_pad_ids_against_clip_tokenizer, test_diffusers_folder,
                    test_default_source, test_errors])
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(code)
