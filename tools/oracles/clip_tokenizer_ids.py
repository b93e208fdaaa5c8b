#!/usr/bin/env python3
"""Independent oracle for fewstep's CLIP tokenizer test ids.

Derives Hugging Face's vocab.json / merges.txt from OpenAI's
bpe_simple_vocab_16e6.txt.gz exactly as CLIP's simple_tokenizer.py defines the
vocabulary (Radford et al. 2021; the byte table of GPT-2, Radford et al. 2019):

  * the 256 byte symbols in bytes_to_unicode() order, the same with "</w>",
  * the merged symbol of each of the first 49152 - 256 - 2 = 48,894 merges
    after the "#version" header line,
  * "<|startoftext|>" (49406) and "<|endoftext|>" (49407),

then tokenizes with transformers' CLIPTokenizer. CLIP cleans text before its
BPE (html.unescape twice, whitespace collapsed, strip, lower-case; ftfy is out
of fewstep's scope and treated as identity); CLIPTokenizer does the whitespace
and case part itself, so this script applies Python's html.unescape twice in
front of it.

Usage:
  clip_tokenizer_ids.py --gz PATH/bpe_simple_vocab_16e6.txt.gz --out ids.json
Writes {"source", "context_length", "cases": [{"prompt", "ids", "ids_77"}]}:
"ids" with BOS/EOS and no padding, "ids_77" padded with <|endoftext|> or
truncated to 77 by CLIPTokenizer itself.
"""
from __future__ import annotations

import argparse
import gzip
import html
import json
import os
import sys
import tempfile

CONTEXT_LENGTH = 77

# Varied prompts: punctuation, digits, apostrophes (contractions and quotes),
# accents, emoji (single, ZWJ, skin tone, flag), HTML entities, odd
# whitespace, the special tokens written out, and prompts over 77 tokens.
PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "",
    "a red apple on a wooden table, 4k, highly detailed!!!",
    "it's the dog's bone; they're sure we'll win, I'd say you've I'm",
    "don't stop: 1999 vs. 2024 -- 3.14159 and 42%",
    "Café crème brûlée à la française, naïve façade, jalapeño",
    "Ærøskøbing, Straße, Łódź, Dvořák, Ångström",
    "waving hand: medium skin tone 👋🏽",
    "red heart ❤️ and fire 🔥🔥🔥",
    "family 👨\u200d👩\u200d👧\u200d👦 with a flag 🇫🇷",
    "AT&amp;T said &quot;hello&quot; &lt;b&gt; and &#39;quoted&#39; &#x263A; &amp;amp;",
    "  lots\tof \n\n whitespace\u00a0and&nbsp;nbsp   ",
    "<|startoftext|>hello<|endoftext|> world",
    "emoji art: (╯°□°)╯︵ ┻━┻ and ¯\\_(ツ)_/¯",
    "snake_case-and-kebab-case #hashtag @user https://example.com/a?b=c",
    "O'Neill's \"quoted\" 'single' ‘curly’ “double”",
    "ÉCOLE ÉLÉMENTAIRE, Ça Va? ÑANDÚ",
    ("a very long prompt about a majestic castle on a hill at sunset, with dramatic clouds, "
     "golden light, reflections in the lake, birds flying, a small boat, trees, mountains in "
     "the distance, photorealistic, 8k, trending on artstation, by a famous painter, "
     "intricate details, volumetric lighting, cinematic composition, sharp focus, masterpiece, "
     "award winning, ultra wide angle lens, soft shadows, warm colour palette, high dynamic range"),
    " ".join(f"word{i}" for i in range(60)),
]


def write_hf_files(gz_path: str, folder: str) -> tuple[str, str]:
    """Writes vocab.json and merges.txt for CLIP's vocabulary into `folder`."""
    # GPT-2's byte table, which CLIP reuses; taken from transformers, not rewritten here.
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    vocab_path = os.path.join(folder, "vocab.json")
    merges_path = os.path.join(folder, "merges.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(merges_path, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.write("\n".join(" ".join(m) for m in merges) + "\n")
    return vocab_path, merges_path


def load_clip_tokenizer(gz_path: str, folder: str):
    """transformers' CLIPTokenizer on the vocabulary derived from `gz_path`."""
    from transformers import CLIPTokenizer
    vocab_path, merges_path = write_hf_files(gz_path, folder)
    return CLIPTokenizer(vocab=vocab_path, merges=merges_path)


def clip_unescape(text: str) -> str:
    """The part of CLIP's clean-up that CLIPTokenizer leaves out."""
    return html.unescape(html.unescape(text)).strip()


def oracle_ids(tokenizer, text: str, pad_to: int | None = None) -> list[int]:
    text = clip_unescape(text)
    if pad_to is None:
        return tokenizer(text)["input_ids"]
    return tokenizer(text, padding="max_length", truncation=True, max_length=pad_to)["input_ids"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gz", required=True, help="bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--out", required=True, help="output JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tok = load_clip_tokenizer(args.gz, folder)
        cases = [{"prompt": p, "ids": oracle_ids(tok, p), "ids_77": oracle_ids(tok, p, CONTEXT_LENGTH)}
                 for p in PROMPTS]
    assert cases[0]["ids"] == [49406, 320, 1125, 539, 320, 2368, 49407], cases[0]["ids"]
    assert any(len(c["ids"]) > CONTEXT_LENGTH for c in cases)
    import transformers
    doc = {"source": f"tools/oracles/clip_tokenizer_ids.py, transformers {transformers.__version__} "
                     "CLIPTokenizer on vocab derived from bpe_simple_vocab_16e6.txt.gz",
           "context_length": CONTEXT_LENGTH, "cases": cases}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
