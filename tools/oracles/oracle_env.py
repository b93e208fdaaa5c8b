"""How Python oracle tests skip or fail.

A user's clone may lack the oracle packages (diffusers, transformers) or
../shared/data: there a test prints why and exits 77, which ctest reports as
skipped. CI always has them and sets FEWSTEP_REQUIRE_ORACLES=1 and
FEWSTEP_REQUIRE_SHARED_DATA=1 (.ci/run): there the same situation exits 1, a
failure. Only a missing third-party package or data file is a skip; an error
in the project's own code or harness always fails.
"""
import importlib
import os
import sys

SKIP = 77


def _required(variable: str) -> bool:
    return os.environ.get(variable) == "1"


def skip(reason: str, variable: str = "FEWSTEP_REQUIRE_ORACLES") -> None:
    """Exits 77 with `reason`, or 1 when `variable` is "1" (CI)."""
    if _required(variable):
        print(f"FAIL: {reason} ({variable}=1: this must not be skipped)")
        sys.exit(1)
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def import_or_skip(name: str):
    """Imports a third-party oracle package, or skips (fails in CI) when it is absent.
    Errors raised while importing it other than ImportError propagate."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip(f"cannot import {name}: {exc}")


def shared_data_or_skip(path: str) -> str:
    """Returns `path` when it exists, else skips (fails in CI) naming it."""
    if not os.path.exists(path):
        skip(f"shared data absent: {path}", "FEWSTEP_REQUIRE_SHARED_DATA")
    return path
