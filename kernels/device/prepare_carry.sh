#!/usr/bin/env bash
# Copies the header-only libraries and GoogleTest's sources from this
# machine's Debian packages into third_party_carry/ (git-ignored), for the
# GPU device, which has no package manager. Run from anywhere; then pass
# carry=["third_party_carry"] to the device run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest="$root/third_party_carry"
mkdir -p "$dest"
cp -r /usr/include/CLI /usr/include/nlohmann "$dest/"
rm -rf "$dest/googletest" && cp -r /usr/src/googletest "$dest/googletest"
du -sh "$dest"
