#!/usr/bin/env python3
"""fewstep's C++ tokenizer against transformers' CLIPTokenizer on generated strings.

Usage: test_tokenizer_oracle.py TOKENIZE_IDS_EXE CLIP_GZ
Generates a few hundred strings from a fixed seed (ASCII words, digits and
punctuation, contractions, Latin-1 and Latin Extended-A letters in both
cases, emoji with skin tones / ZWJ / variation selectors / flags, odd
whitespace, HTML entities of fewstep's table; no CJK, where ftfy-less
clean-ups differ). The C++ side is run twice: on OpenAI's .gz file and on the
vocab.json + merges.txt folder derived from it. Exits 77 (ctest skip) when
transformers or the .gz file is absent (1 in CI: see tools/oracles/oracle_env.py).
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "oracles"))
from oracle_env import import_or_skip, shared_data_or_skip  # noqa: E402

WORDS = ["a", "photo", "of", "the", "cat", "dog", "red", "apple", "castle", "hill", "sunset",
         "painting", "portrait", "astronaut", "riding", "horse", "highly", "detailed", "4k", "8k",
         "octane", "render", "trending", "artstation", "emoji", "waving", "hand", "skin", "tone"]
CONTRACTIONS = ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "O'Neill", "rock'n'roll"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "!!", "?!", "¿", "¡", "«", "»", "°"]
ENTITIES = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&apos;", "&nbsp;", "&#233;", "&#x1F600;", "&amp;amp;"]
SPACES = [" ", " ", " ", "  ", "\t", "\u00a0", " \u3000 "]
LATIN = ([chr(c) for c in range(0xC0, 0x100) if c not in (0xD7, 0xF7)]
         + [chr(c) for c in range(0x100, 0x180)])
EMOJI = ([chr(c) for c in range(0x1F600, 0x1F650)] + [chr(c) for c in range(0x1F300, 0x1F3FA, 7)]
         + [chr(c) for c in range(0x1F680, 0x1F6C5, 3)] + ["\u2764\ufe0f", "\u2600\ufe0f", "\u263a"]
         + ["\U0001F44B" + chr(c) for c in range(0x1F3FB, 0x1F400)]
         + ["\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F1EB\U0001F1F7", "\U0001F3F3\ufe0f\u200d\U0001F308"])


def random_piece(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        w = rng.choice(WORDS)
        return w.upper() if rng.random() < 0.15 else (w.capitalize() if rng.random() < 0.2 else w)
    if kind < 0.45:
        return rng.choice(CONTRACTIONS)
    if kind < 0.55:
        return str(rng.randrange(0, 10 ** rng.randrange(1, 7)))
    if kind < 0.65:
        return rng.choice(PUNCT)
    if kind < 0.8:
        return "".join(rng.choice(LATIN + list("aeiouns")) for _ in range(rng.randrange(1, 9)))
    if kind < 0.93:
        return rng.choice(EMOJI)
    return rng.choice(ENTITIES)


def random_string(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randrange(0, 16)):
        out.append(random_piece(rng))
        out.append(rng.choice(SPACES) if rng.random() < 0.8 else "")
    text = "".join(out)
    if rng.random() < 0.1:
        text = rng.choice(SPACES) + text
    return text


def strings(count: int, seed: int = 20240611) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        s = random_string(rng)
        # Only NFC-stable strings: transformers normalizes to NFC, CLIP without ftfy does not.
        if unicodedata.normalize("NFC", s) == s:
            out.append(s)
    return out


def run_cpp(exe: str, path: str, texts: list[str]) -> list[list[int]]:
    proc = subprocess.run([exe, path], input="\n".join(texts) + "\n", capture_output=True,
                          text=True, encoding="utf-8", check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{exe} {path} failed ({proc.returncode}): {proc.stderr.strip()}")
    lines = proc.stdout.split("\n")[:-1]
    assert len(lines) == len(texts), (len(lines), len(texts))
    return [[int(t) for t in line.split()] for line in lines]


def main() -> int:
    exe, gz = sys.argv[1], sys.argv[2]
    import_or_skip("transformers")
    shared_data_or_skip(gz)
    from clip_tokenizer_ids import load_clip_tokenizer, oracle_ids

    texts = strings(400)
    with tempfile.TemporaryDirectory() as folder:
        tok = load_clip_tokenizer(gz, folder)
        expected = [oracle_ids(tok, t) for t in texts]
        results = {"gz": run_cpp(exe, gz, texts), "vocab.json folder": run_cpp(exe, folder, texts)}
    failures = 0
    for source, got in results.items():
        for text, want, have in zip(texts, expected, got):
            if want != have:
                failures += 1
                if failures <= 10:
                    print(f"MISMATCH ({source}) {text!r}\n  transformers: {want}\n  fewstep:      {have}")
    n_tokens = sum(len(e) for e in expected)
    print(f"{len(texts)} strings, {n_tokens} tokens, 2 file formats: {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
