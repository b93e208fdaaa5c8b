"""Shared helpers of the exporter's Python tests (tests/export/test_*.py).

Exit codes follow ctest: 0 pass, 1 fail, 77 skip. A missing oracle library
(diffusers, transformers, peft) is a skip on a user's machine and a failure
where FEWSTEP_REQUIRE_ORACLES=1 (CI), so an oracle test can never pass by
not running.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
import traceback

SKIP, FAIL = 77, 1
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))


def oracles_required() -> bool:
    return os.environ.get("FEWSTEP_REQUIRE_ORACLES", "") not in ("", "0")


def need(*modules: str) -> None:
    """Imports `modules` or exits: 77 (skip), or 1 when FEWSTEP_REQUIRE_ORACLES=1."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if oracles_required():
                print(f"FAIL: oracle {name} is required (FEWSTEP_REQUIRE_ORACLES=1) but missing: {e}")
                sys.exit(FAIL)
            print(f"SKIP: {name} is not installed in this Python ({e})")
            sys.exit(SKIP)
    quiet_oracles()


def quiet_oracles() -> None:
    """Silences the oracles' progress bars and deprecation chatter."""
    import warnings
    warnings.filterwarnings("ignore")
    try:
        import diffusers
        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import transformers
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def rel_err(got, ref) -> float:
    """max |got - ref| / max |ref| (float64)."""
    ref = ref.double()
    return float((got.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def run(tests) -> int:
    """Runs each test function, prints PASS/FAIL lines and returns the exit code."""
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
    return FAIL if failed else 0


def scripted(module):
    """torch.jit.script(module), saved and loaded again, as a package holds it."""
    import io

    import torch
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    buf.seek(0)
    return torch.jit.load(buf)
