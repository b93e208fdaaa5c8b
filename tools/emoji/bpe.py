#!/usr/bin/env python3
"""Byte-level BPE in CLIP's format: a trainer and a reference encoder.

Format (Radford et al. 2021, CLIP's simple_tokenizer, reproduced as a
specification): text is HTML-unescaped twice, whitespace collapsed, trimmed and
lower-cased; split with CLIP's pre-tokenization pattern; each piece's UTF-8
bytes are mapped through CLIP's byte-to-unicode table; the last symbol of a
word carries "</w>". The vocabulary is the 256 byte symbols, the same 256 with
"</w>", one entry per merge in rank order, then <|startoftext|> and
<|endoftext|>. merges.txt starts with "#version: 0.2".

Training (Sennrich et al. 2016, Algorithm 1): count adjacent symbol pairs over
the word frequencies, merge the most frequent pair (ties: the
lexicographically smallest pair), repeat until the vocabulary is full or no
pair occurs twice.

Usage: bpe.py train --out DIR [--vocab-size 4096]   (reads tools/emoji/captions.txt)
       bpe.py encode --dir DIR "text" ...
"""
import argparse
import collections
import html
import json
import os

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode():
    """CLIP's/GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()


def clean(text):
    text = html.unescape(html.unescape(text))
    return regex.sub(r"\s+", " ", text).strip().lower()


def pre_tokenize(text):
    """Returns the pieces of text, each as a string of byte-table characters."""
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))
            for piece in PATTERN.findall(clean(text))]


def word_symbols(piece):
    return tuple(piece[:-1]) + (piece[-1] + "</w>",)


def merge_pair(w, a, b):
    """Returns the symbol list w with every adjacent (a, b) replaced by a+b."""
    out, i = [], 0
    while i < len(w):
        if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(w[i])
            i += 1
    return out


def base_vocab():
    syms = list(bytes_to_unicode().values())
    return syms + [s + "</w>" for s in syms]


def train(texts, vocab_size):
    """Returns the merge list [(a, b), ...] in rank order."""
    words = collections.Counter()
    for t in texts:
        for piece in pre_tokenize(t):
            words[word_symbols(piece)] += 1
    words = dict(words)
    n_merges = vocab_size - 512 - 2
    merges = []
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for w, f in words.items():
            for i in range(len(w) - 1):
                pairs[(w[i], w[i + 1])] += f
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        a, b = best[0]
        merges.append((a, b))
        merged = {}
        for w, f in words.items():
            if len(w) < 2:
                merged[w] = merged.get(w, 0) + f
                continue
            out = tuple(merge_pair(w, a, b))
            merged[out] = merged.get(out, 0) + f
        words = merged
    return merges


def save(merges, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    vocab = base_vocab() + [a + b for a, b in merges] + [BOS, EOS]
    assert len(set(vocab)) == len(vocab)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))


class Tokenizer:
    """CLIP-style encoder over vocab.json + merges.txt."""

    def __init__(self, d):
        with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")[1:]
        self.ranks = {tuple(l.split()): i for i, l in enumerate(l for l in lines if l)}
        self.bos, self.eos = self.vocab[BOS], self.vocab[EOS]

    def bpe(self, piece):
        w = list(word_symbols(piece))
        while len(w) > 1:
            pairs = [(self.ranks.get((w[i], w[i + 1]), 1 << 30), i) for i in range(len(w) - 1)]
            rank, first = min(pairs)
            if rank == 1 << 30:
                break
            w = merge_pair(w, w[first], w[first + 1])
        return w

    def encode(self, text):
        """Returns ids with BOS and EOS, without padding."""
        ids = [self.bos]
        for piece in pre_tokenize(text):
            ids += [self.vocab[s] for s in self.bpe(piece)]
        return ids + [self.eos]

    def encode_padded(self, text, length):
        ids = self.encode(text)
        if len(ids) > length:
            ids = ids[:length - 1] + [self.eos]
        return ids + [self.eos] * (length - len(ids))


def main():
    ap = argparse.ArgumentParser(description="CLIP-format byte-level BPE")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--captions", default=os.path.join(HERE, "captions.txt"))
    t.add_argument("--out", required=True)
    t.add_argument("--vocab-size", type=int, default=4096)
    e = sub.add_parser("encode")
    e.add_argument("--dir", required=True)
    e.add_argument("text", nargs="+")
    a = ap.parse_args()
    if a.cmd == "train":
        with open(a.captions, encoding="utf-8") as f:
            texts = [l for l in f.read().split("\n") if l]
        merges = train(texts, a.vocab_size)
        save(merges, a.out)
        print("merges %d, vocab %d" % (len(merges), len(merges) + 514))
    else:
        tok = Tokenizer(a.dir)
        for s in a.text:
            print(" ".join(map(str, tok.encode(s))))


if __name__ == "__main__":
    main()
