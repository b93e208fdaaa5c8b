"""Tokenizer files of a fewstep package: CLIP's vocab.json + merges.txt and the pad id.

CLIP's byte-level BPE vocabulary (Radford et al. 2021; the byte table of GPT-2,
Radford et al. 2019, Sec. 2.2) is defined by OpenAI's merges file
bpe_simple_vocab_16e6.txt.gz: the 256 byte symbols in byte-table order, the
same 256 with "</w>", the merged symbol of each of the first 49152-256-2 =
48,894 merges after the header line, then <|startoftext|> (49406) and
<|endoftext|> (49407). merges.txt holds those merges after a "#version: 0.2"
line (transformers and fewstep's C++ loader both skip that line).

Padding differs by text encoder, and fewstep's C++ tokenizer pads with
Tokenizer::pad_id(), which is the end token unless set_pad_id() is called:
  - OpenAI CLIP-L (SD 1.x, SDXL's first encoder): pad with <|endoftext|>, 49407;
  - OpenCLIP (SD 2.x, SDXL's tokenizer_2): pad with "!", id 0, as the
    `pad_token` of those diffusers tokenizer configs says (OpenCLIP's own
    tokenizer pads with zeros).
The text encoders are causal, so pads change no hidden state before the end
token, but every position after it is fed to the UNet's cross-attention: the
runtime must pad with the manifest's `tokenizer.pad_id` / `tokenizer_2.pad_id`.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from typing import Dict, List, Optional, Tuple

try:
    from .errors import ExportError
except ImportError:  # run as a plain module from tools/export/
    from errors import ExportError

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_MERGES = 49152 - 256 - 2  # merges used by CLIP's vocabulary (48,894)
CLIP_PAD = EOS                 # OpenAI CLIP-L
OPENCLIP_PAD = "!"             # OpenCLIP ViT-H / bigG in diffusers' tokenizer configs
# The pad token diffusers' pipeline configs give each text-encoder role.
PAD_TOKEN_BY_ROLE = {"sd15": CLIP_PAD, "sd2": OPENCLIP_PAD, "sdxl_te1": CLIP_PAD, "sdxl_te2": OPENCLIP_PAD}
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


def default_bpe_path() -> str:
    """The CLIP merges file that PyPI's open-clip-torch ships (MIT), found without importing
    the package (it needs torchvision). Raises ExportError when it is not installed."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, BPE_FILE)
        if os.path.isfile(path):
            return path
    raise ExportError(f"no tokenizer: pass --tokenizer PATH (a tokenizer/ folder or {BPE_FILE}), "
                      "or `pip install --no-deps open-clip-torch`")


def byte_symbols() -> List[str]:
    """CLIP's 256 byte symbols in vocabulary order: the bytes that are printable Latin-1
    (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) as themselves, then the other 68 bytes, in byte
    order, as U+0100 + k (GPT-2's reversible byte table, Radford et al. 2019, Sec. 2.2)."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(0x100 + k) for k in range(len(others))]


def clip_vocab_from_bpe_gz(path: str) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """CLIP's vocabulary (49,408 tokens) and merges (48,894) from OpenAI's gzip merges file.
    Raises ExportError naming `path` when it is unreadable or holds too few merges."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: not a readable gzip BPE merges file ({e})") from None
    merges = [tuple(line.split()) for line in lines[1:CLIP_MERGES + 1]]
    if len(merges) < CLIP_MERGES or any(len(m) != 2 for m in merges):
        raise ExportError(f"{path}: expected {CLIP_MERGES} merge lines of two symbols after the header")
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def _read_folder(folder: str) -> Tuple[Dict[str, int], List[Tuple[str, str]], Optional[str]]:
    """vocab, merges and the configured pad token of a diffusers/transformers tokenizer folder."""
    vocab_path, merges_path = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    for p in (vocab_path, merges_path):
        if not os.path.isfile(p):
            raise ExportError(f"{folder}: tokenizer folder lacks {os.path.basename(p)}")
    try:
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise ValueError("not an object of token -> id")
    except (OSError, ValueError) as e:
        raise ExportError(f"{vocab_path}: {str(e).splitlines()[0]}") from None
    merges = []
    with open(merges_path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if (n == 0 and line.startswith("#version")) or not line.strip():
                continue
            pair = tuple(line.split())
            if len(pair) != 2:
                raise ExportError(f"{merges_path}: line {n + 1} is not two space-separated symbols")
            merges.append(pair)
    pad = None
    # transformers lets special_tokens_map.json override tokenizer_config.json (SD 2.x's folder
    # says "<|endoftext|>" in the latter and "!" in the former; its tokenizer pads with "!").
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = os.path.join(folder, name)
        if pad is None and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    value = json.load(f).get("pad_token")
            except (OSError, ValueError, AttributeError) as e:
                raise ExportError(f"{path}: not a JSON object ({str(e).splitlines()[0]})") from None
            pad = value.get("content") if isinstance(value, dict) else value
    return vocab, merges, pad


def _write_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_tokenizer(dst_dir: str, source: Optional[str] = None, pad_token: Optional[str] = None) -> Dict:
    """Writes dst_dir/vocab.json and dst_dir/merges.txt (each atomically) and returns the
    manifest entry {"vocab": "<dir>/vocab.json", "merges": "<dir>/merges.txt", "pad_id": N},
    paths relative to dst_dir's parent (the package folder).

    source: a diffusers/transformers tokenizer folder (vocab.json, merges.txt, and the pad
    token from special_tokens_map.json, else tokenizer_config.json, the precedence transformers
    gives them), OpenAI's gzip merges file,
    or None for default_bpe_path(). pad_token: overrides the folder's; else the folder's;
    else <|endoftext|> (CLIP-L). Pass PAD_TOKEN_BY_ROLE[role] for a .gz source of an OpenCLIP
    encoder. Raises ExportError (one line naming the file) for unreadable or malformed
    sources, a vocabulary without <|startoftext|>/<|endoftext|>, or an unknown pad token.
    """
    source = source or default_bpe_path()
    if os.path.isdir(source):
        vocab, merges, folder_pad = _read_folder(source)
    elif os.path.isfile(source):
        vocab, merges = clip_vocab_from_bpe_gz(source)
        folder_pad = None
    else:
        raise ExportError(f"{source}: no such tokenizer folder or file")
    for special in (BOS, EOS):
        if special not in vocab:
            raise ExportError(f"{source}: vocabulary lacks {special}")
    pad = pad_token or folder_pad or CLIP_PAD
    if pad not in vocab:
        raise ExportError(f"{source}: pad token {pad!r} is not in the vocabulary")
    os.makedirs(dst_dir, exist_ok=True)
    _write_atomic(os.path.join(dst_dir, "vocab.json"), json.dumps(vocab, ensure_ascii=False))
    _write_atomic(os.path.join(dst_dir, "merges.txt"),
                  "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    name = os.path.basename(os.path.normpath(dst_dir))
    return {"vocab": f"{name}/vocab.json", "merges": f"{name}/merges.txt", "pad_id": int(vocab[pad])}
