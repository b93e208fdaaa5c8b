#!/usr/bin/env python3
"""Chooses, once and before training, the evaluation captions:
  contact_sheet: 16 hand-picked iconic training captions (the README's sheet);
  train:   50 training captions = the 16 above + 34 drawn with seed 0 among the
           captions without a skin-tone or gender variant;
  heldout: 20 captions removed from training (seed 1): 10 skin-tone variants,
           whose base emoji stays in training, and 10 other captions.
Writes tools/emoji/eval_captions.json. Re-running gives the same file.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
SHEET = ["red apple", "banana", "watermelon", "pizza", "dog face", "cat face", "frog",
         "penguin", "red heart", "blue heart", "fire", "sun", "snowman", "rocket",
         "grinning face", "flag: France"]


def main():
    with open(os.path.join(HERE, "captions.txt"), encoding="utf-8") as f:
        caps = [l for l in f.read().split("\n") if l]
    assert all(c in caps for c in SHEET)
    plain = [c for c in caps if "skin tone" not in c and "," not in c and c not in SHEET]
    toned = [c for c in caps if "skin tone" in c]
    r = random.Random(1)
    heldout = r.sample(toned, 10) + r.sample(plain, 10)
    rest = [c for c in plain if c not in heldout]
    train = SHEET + random.Random(0).sample(rest, 34)
    out = {"contact_sheet": SHEET, "train": train, "heldout": heldout}
    with open(os.path.join(HERE, "eval_captions.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
