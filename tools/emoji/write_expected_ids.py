#!/usr/bin/env python3
"""Writes models/emoji/tokenizer_expected_ids.json: caption -> ids (BOS and EOS
included, no padding) from this folder's reference encoder (bpe.py), for every
caption in captions.txt, and cross-checks them against transformers'
CLIPTokenizer built from the same vocab.json/merges.txt when it is installed.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOK = os.path.join(ROOT, "models", "emoji", "tokenizer")


def main():
    with open(os.path.join(HERE, "captions.txt"), encoding="utf-8") as f:
        caps = [l for l in f.read().split("\n") if l]
    tok = bpe.Tokenizer(TOK)
    out = {c: tok.encode(c) for c in caps}
    try:
        from transformers import CLIPTokenizer
        ref = CLIPTokenizer(os.path.join(TOK, "vocab.json"), os.path.join(TOK, "merges.txt"))
        bad = [c for c in caps if ref(c)["input_ids"] != out[c]]
        print("transformers CLIPTokenizer disagrees on %d of %d captions" % (len(bad), len(caps)))
        for c in bad[:10]:
            print(" ", c, out[c], ref(c)["input_ids"])
        if bad:
            sys.exit(1)
    except ImportError:
        print("transformers absent: no cross-check")
    with open(os.path.join(ROOT, "models", "emoji", "tokenizer_expected_ids.json"), "w",
              encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
    print("wrote %d captions" % len(out))


if __name__ == "__main__":
    main()
