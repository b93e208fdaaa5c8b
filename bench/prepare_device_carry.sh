#!/usr/bin/env bash
# Fills third_party_carry/ (git-ignored) for bench/run_device.sh: what
# kernels/device/prepare_carry.sh copies (CLI11, nlohmann-json, GoogleTest
# sources) plus stb, which the full build needs. Then pass
# carry=["third_party_carry"] to the device run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/kernels/device/prepare_carry.sh"
rm -rf "$root/third_party_carry/stb" && cp -r /usr/include/stb "$root/third_party_carry/stb"
du -sh "$root/third_party_carry"
