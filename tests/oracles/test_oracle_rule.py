#!/usr/bin/env python3
"""The oracle rule itself: with diffusers or transformers made unimportable,
every Python oracle test that needs them exits 77 (skipped) on a user's
machine and 1 (failed) under FEWSTEP_REQUIRE_ORACLES=1, as CI runs them.

The block is a package of that name earlier on PYTHONPATH whose import raises
ImportError. Usage: test_oracle_rule.py NAME=SCRIPT [ARGS...] ... where each
argument names the blocked package and the oracle command, separated by
"::" (e.g. diffusers=tools/oracles/diffusers_samplers.py::--out::/tmp/x.json).
Exit 0 when every script follows the rule, 1 otherwise.
"""
import os
import subprocess
import sys
import tempfile


def run(block: str, command: list, require: bool) -> int:
    with tempfile.TemporaryDirectory() as root:
        pkg = os.path.join(root, block)
        os.makedirs(pkg)
        with open(os.path.join(pkg, "__init__.py"), "w") as f:
            f.write(f"raise ImportError('{block} blocked by test_oracle_rule.py')\n")
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("FEWSTEP_REQUIRE_ORACLES", None)
        if require:
            env["FEWSTEP_REQUIRE_ORACLES"] = "1"
        proc = subprocess.run([sys.executable] + command, env=env, capture_output=True, text=True, timeout=300)
        return proc.returncode


def main() -> int:
    failures = 0
    for spec in sys.argv[1:]:
        block, _, cmd = spec.partition("=")
        command = cmd.split("::")
        for require, want in ((False, 77), (True, 1)):
            got = run(block, command, require)
            ok = got == want
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(command[0])} with {block} blocked, "
                  f"FEWSTEP_REQUIRE_ORACLES={'1' if require else 'unset'}: exit {got} (want {want})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
