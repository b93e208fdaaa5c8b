#!/usr/bin/env python3
"""Builds the emoji training set from Debian's Noto Color Emoji font and CLDR labels.

Inputs (Debian packages):
  fonts-noto-color-emoji  /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
      CBDT colour bitmaps (136x128 PNG, Apache-2.0 artwork in an SIL OFL 1.1 font).
  unicode-cldr-core       /usr/share/unicode/cldr/common/annotations{,Derived}/en.xml
      English short names ("tts") and keywords (Unicode-DFS-2016 licence).

Steps (deterministic; no randomness at all):
  1. Every CBDT glyph gets its code-point sequences: single code points from the
     cmap, multi-code-point sequences (skin tones, ZWJ, flags, keycaps, tag
     sequences) from the GSUB ligature lookups, whose component glyphs are
     resolved back to code points through the cmap.
  2. Each sequence is matched to a CLDR label with U+FE0F removed on both sides.
     Glyphs with no label are skipped and counted.
  3. The PNG is composited on white, padded to a square keeping the aspect
     ratio, and box-filtered down to RES x RES.
  4. Captions come from the label: "waving hand: medium skin tone" becomes
     "waving hand, medium skin tone"; "flag: France" stays as it is.

Outputs:
  data/emoji_<RES>.npz  images uint8 [N,RES,RES,3], captions (str), sequences (str, hex)
  tools/emoji/captions.txt  one caption per line, in dataset order
  tools/emoji/data_checksums.txt  SHA-256 of inputs and outputs
"""
import argparse
import hashlib
import io
import os
import sys
import xml.etree.ElementTree as ET

import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
CLDR = "/usr/share/unicode/cldr/common"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def sha256(path_or_bytes):
    h = hashlib.sha256()
    if isinstance(path_or_bytes, bytes):
        h.update(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def load_cldr():
    """Returns {code-point tuple without FE0F: (tts label, [keywords])}."""
    labels = {}
    for name in ("annotations/en.xml", "annotationsDerived/en.xml"):
        root = ET.parse(os.path.join(CLDR, name)).getroot()
        for a in root.iter("annotation"):
            key = tuple(ord(c) for c in a.get("cp") if ord(c) != 0xFE0F)
            entry = labels.setdefault(key, [None, []])
            if a.get("type") == "tts":
                entry[0] = a.text.strip()
            else:
                entry[1] = [k.strip() for k in a.text.split("|")]
    return {k: (v[0], v[1]) for k, v in labels.items() if v[0]}


def glyph_sequences(font):
    """Returns {glyph name: [code-point tuples]} from the cmap and GSUB ligatures."""
    cmap = font.getBestCmap()
    seqs = {}
    glyph_cp = {}
    for cp in sorted(cmap):
        g = cmap[cp]
        seqs.setdefault(g, []).append((cp,))
        glyph_cp.setdefault(g, cp)
    gsub = font["GSUB"].table
    for lookup in gsub.LookupList.Lookup:
        if lookup.LookupType != 4:
            continue
        for st in lookup.SubTable:
            for first in sorted(st.ligatures):
                for lig in st.ligatures[first]:
                    comps = [first] + list(lig.Component)
                    if all(c in glyph_cp for c in comps):
                        seqs.setdefault(lig.LigGlyph, []).append(
                            tuple(glyph_cp[c] for c in comps))
    return seqs


def caption_from_label(label):
    if label.startswith("flag:"):
        return label
    return label.replace(": ", ", ")


def to_image(png, res):
    im = Image.open(io.BytesIO(png)).convert("RGBA")
    w, h = im.size
    side = max(w, h)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(im, ((side - w) // 2, (side - h) // 2))
    rgb = canvas.convert("RGB").resize((res, res), Image.Resampling.BOX)
    return np.asarray(rgb, dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "data"))
    args = ap.parse_args()

    font = TTFont(FONT)
    strike = font["CBDT"].strikeData[0]
    labels = load_cldr()
    seqs = glyph_sequences(font)

    images, captions, sequences = [], [], []
    skipped = []
    duplicates = []
    seen_captions = set()
    for g in font.getGlyphOrder():
        if g not in strike:
            continue
        found = []
        for s in seqs.get(g, []):
            key = tuple(c for c in s if c != 0xFE0F)
            if key in labels:
                found.append((s, labels[key]))
        if not found:
            skipped.append(g)
            continue
        # A glyph drawn for several sequences (e.g. the French flag for FR, CP
        # and MF) gives one entry per distinct label.
        for s, (label, _keywords) in found:
            cap = caption_from_label(label)
            if cap in seen_captions:
                duplicates.append(g)
                continue
            seen_captions.add(cap)
            images.append(to_image(strike[g].imageData, args.res))
            captions.append(cap)
            sequences.append(" ".join("%04X" % c for c in s))

    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, "emoji_%d.npz" % args.res)
    arr = np.stack(images)
    np.savez(out, images=arr, captions=np.array(captions), sequences=np.array(sequences))
    cap_path = os.path.join(HERE, "captions.txt")
    with open(cap_path, "w", encoding="utf-8") as f:
        f.write("\n".join(captions) + "\n")
    with open(os.path.join(HERE, "data_checksums.txt"), "w") as f:
        f.write("# sha256 of prepare_data.py inputs and outputs (res %d)\n" % args.res)
        f.write("%s  %s\n" % (sha256(FONT), FONT))
        for n in ("annotations/en.xml", "annotationsDerived/en.xml"):
            f.write("%s  %s\n" % (sha256(os.path.join(CLDR, n)), os.path.join(CLDR, n)))
        f.write("%s  images uint8 %s\n" % (sha256(arr.tobytes()), list(arr.shape)))
        f.write("%s  tools/emoji/captions.txt\n" % sha256(cap_path))
        f.write("# bitmaps %d, entries %d (a glyph shared by several labelled sequences gives one per label), skipped: no CLDR label %d, caption already taken %d\n"
                % (len(strike), len(captions), len(skipped), len(duplicates)))
    print("bitmaps %d kept %d no-label %d duplicate %d -> %s"
          % (len(strike), len(captions), len(skipped), len(duplicates), out))
    print("skipped examples:", skipped[:20], file=sys.stderr)


if __name__ == "__main__":
    main()
