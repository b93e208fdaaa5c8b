"""Loads libfewstep_ops with torch.ops.load_library, as export scripts do, and
checks torch.ops.fewstep.attention against float64 attention
(softmax(scale * q k^T) v, Vaswani et al. 2017, eq. 1), both called directly
and from a scripted function (so the op can go into TorchScript models).

Usage: load_library.py path/to/libfewstep_ops.so. Exit code 77 means skipped
(1 under FEWSTEP_REQUIRE_ORACLES=1; see tools/oracles/oracle_env.py).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "oracles"))
from oracle_env import import_or_skip  # noqa: E402

torch = import_or_skip("torch")


def reference(q, k, v, scale):
    scores = (q.double() @ k.double().transpose(-2, -1)) * scale
    return torch.softmax(scores, -1) @ v.double()


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.ops.fewstep.attention(q, k, v, 0.125)


def main() -> int:
    torch.ops.load_library(sys.argv[1])
    q, k, v = torch.randn(2, 3, 33, 64), torch.randn(2, 3, 45, 64), torch.randn(2, 3, 45, 64)
    ref = reference(q, k, v, 0.125)
    sdpa_error = (torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.125) - ref).abs().max().item()
    floor = 4 * 2.0**-24 * ref.abs().max().item()
    scripted = torch.jit.script(fused_attention)
    if "fewstep::attention" not in str(scripted.graph):
        print("the scripted graph does not call fewstep::attention:\n", scripted.graph)
        return 1
    for name, out in (("eager", torch.ops.fewstep.attention(q, k, v, 0.125)), ("scripted", scripted(q, k, v))):
        error = (out - ref).abs().max().item()
        if not error <= 2 * sdpa_error + floor:
            print(f"{name}: error {error} exceeds 2 x {sdpa_error} + {floor}")
            return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
