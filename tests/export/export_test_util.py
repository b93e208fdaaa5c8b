"""Shared helpers of the exporter's Python tests (tests/export/test_*.py).

Exit codes follow ctest: 0 pass, 1 fail, 77 skip. Skipping goes through
tools/oracles/oracle_env.py: a missing oracle package (diffusers, transformers,
peft) is a skip on a user's machine and a failure where
FEWSTEP_REQUIRE_ORACLES=1 (CI), so an oracle test can never pass by not running.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))
sys.path.insert(0, os.path.join(ROOT, "tools", "oracles"))

from oracle_env import import_or_skip, skip  # noqa: E402,F401  (re-exported for the tests)


def need(*modules: str) -> None:
    """Imports `modules` or exits: 77 (skip), or 1 when FEWSTEP_REQUIRE_ORACLES=1."""
    for name in modules:
        import_or_skip(name)
    quiet_oracles()


def quiet_oracles() -> None:
    """Silences the oracles' progress bars and deprecation chatter."""
    import warnings
    warnings.filterwarnings("ignore")
    for name in ("diffusers", "transformers"):
        if name in sys.modules:
            logging = sys.modules[name].utils.logging
            logging.set_verbosity_error()
            logging.disable_progress_bar()


def clip_merges_file(argv_path: str | None = None) -> str:
    """OpenAI's CLIP merges file: `argv_path`, else ../shared/data/clip, else the copy that
    open-clip-torch ships; skips (fails in CI) when none exists."""
    import tokenizer_files as tf
    from errors import ExportError
    for path in ([argv_path] if argv_path else []) + [os.path.join(ROOT, "..", "shared", "data", "clip", tf.BPE_FILE)]:
        if os.path.isfile(path):
            return path
    try:
        return tf.default_bpe_path()
    except ExportError as e:
        skip(f"no CLIP merges file: {e}")


def rel_err(got, ref) -> float:
    """max |got - ref| / max |ref| (float64)."""
    ref = ref.double()
    return float((got.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def scripted(module):
    """torch.jit.script(module), saved and loaded again, as a package holds it."""
    import io

    import torch
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    buf.seek(0)
    return torch.jit.load(buf)


def run(tests) -> int:
    """Runs each test function, prints PASS/FAIL lines and returns the exit code (0 or 1)."""
    failed = 0
    for fn in tests:
        start = time.time()
        try:
            fn()
            print(f"PASS {fn.__name__} ({time.time() - start:.1f} s)")
        except Exception:  # report every failure, then exit 1
            failed += 1
            print(f"FAIL {fn.__name__}\n{traceback.format_exc()}")
    print(f"{len(tests) - failed}/{len(tests)} passed")
    return 1 if failed else 0
