#!/usr/bin/env bash
# fewstep set-up on Debian 12: installs what is missing (apt packages, a
# project-local .venv with PyPI's torch), configures and builds, then
#   tools/setup.sh demo      generates an image with the embedded default model
#   tools/setup.sh test      runs the whole test suite (ctest), then the
#                            sanitizer tests and the fuzz smoke below
#   tools/setup.sh build     only sets up and builds
# and, without torch (clang-14 and its runtimes installed when missing):
#   tools/setup.sh sanitize  the torch-free cores and their tests under
#                            AddressSanitizer + UBSan (build-asan/, ctest)
#   tools/setup.sh fuzz      each libFuzzer target for FEWSTEP_FUZZ_SECONDS
#                            (default 20) from its seed corpus (build-fuzz/)
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
MODE=${1:-build}
BUILD=${FEWSTEP_BUILD_DIR:-$ROOT/build}
JOBS=${FEWSTEP_JOBS:-$(nproc)}
FUZZ_SECONDS=${FEWSTEP_FUZZ_SECONDS:-20}
case "$MODE" in
  demo|test|build|sanitize|fuzz) ;;
  *) echo "usage: tools/setup.sh [demo|test|build|sanitize|fuzz]" >&2; exit 2 ;;
esac

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- 1. Debian packages ------------------------------------------------------
APT_PACKAGES=(
  g++ cmake ninja-build pkg-config git python3 python3-venv python3-pip
  libcli11-dev libstb-dev nlohmann-json3-dev googletest libgtest-dev
  libre2-dev libicu-dev zlib1g-dev fonts-dejavu-core
  fonts-noto-color-emoji unicode-cldr-core
  libgloo-dev  # Gloo's headers for c10d's ProcessGroupGloo.hpp (dist/); its libgloo.so is never linked
)
# clang's libFuzzer and sanitizer runtimes, only where they are used.
case "$MODE" in test|sanitize|fuzz) APT_PACKAGES+=(clang-14 libclang-rt-14-dev) ;; esac
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. Torch-free builds: the cores under sanitizers, and the fuzz targets ---
# Their own build trees, configured with clang; no torch, no .venv.
sanitize_tests() {
  local tree="$ROOT/build-asan"
  log "sanitizer build ($tree): torch-free cores and tests under ASan + UBSan"
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$tree" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFEWSTEP_SANITIZE=address,undefined >/dev/null
  cmake --build "$tree" -j "$JOBS"
  ctest --test-dir "$tree" --output-on-failure -j "$JOBS"
}
fuzz_smoke() {
  local tree="$ROOT/build-fuzz"
  log "fuzz build ($tree): each target ${FUZZ_SECONDS} s from its seed corpus"
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$tree" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFEWSTEP_FUZZ=ON -DFEWSTEP_TESTS=OFF -DFEWSTEP_FUZZ_SECONDS="$FUZZ_SECONDS" >/dev/null
  cmake --build "$tree" -j "$JOBS"
  ctest --test-dir "$tree" -L fuzz --output-on-failure -j "$JOBS"
}
case "$MODE" in
  sanitize) sanitize_tests; exit 0 ;;
  fuzz) fuzz_smoke; exit 0 ;;
esac

# --- 3. Python virtual environment with torch (LibTorch lives inside it) ------
PY=${FEWSTEP_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
REQ_HASH=$(cat tools/requirements.txt tools/requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.fewstep-req 2>/dev/null)" != "$REQ_HASH" ]; then
  log "installing Python packages (torch is several GB the first time)"
  PIP=(.venv/bin/pip install --quiet --disable-pip-version-check --progress-bar off)
  "${PIP[@]}" -r tools/requirements.txt
  "${PIP[@]}" --no-deps -r tools/requirements-nodeps.txt
  echo "$REQ_HASH" > .venv/.fewstep-req
fi

# --- 4. Configure and build ---------------------------------------------------
if [ ! -f "$BUILD/build.ninja" ]; then
  log "configuring $BUILD"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release ${FEWSTEP_CMAKE_ARGS:-} >/dev/null
fi
log "building with $JOBS jobs"
cmake --build "$BUILD" -j "$JOBS"

# --- 5. What was asked for ------------------------------------------------------
case "$MODE" in
  demo)
    MODEL="$ROOT/models/emoji"
    [ -f "$MODEL/model.json" ] || MODEL="$BUILD/test_models/tiny-blocks"
    log "generating 'red apple' with $MODEL"
    "$BUILD/fewstep" generate --model "$MODEL" --prompt "red apple" --seed 42 --upscale 8 \
      --out "$ROOT/red-apple.png" --overwrite
    ;;
  test)
    log "running the test suite"
    ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS"
    sanitize_tests
    fuzz_smoke
    ;;
  build) ;;
esac
