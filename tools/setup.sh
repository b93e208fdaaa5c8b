#!/usr/bin/env bash
# fewstep set-up on Debian 12: installs what is missing (apt packages, a
# project-local .venv with PyPI's torch), configures and builds, then
#   tools/setup.sh demo   generates an image with the embedded default model
#   tools/setup.sh test   runs the whole test suite (ctest)
#   tools/setup.sh build  only sets up and builds
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
MODE=${1:-build}
BUILD=${FEWSTEP_BUILD_DIR:-$ROOT/build}
JOBS=${FEWSTEP_JOBS:-$(nproc)}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- 1. Debian packages ------------------------------------------------------
APT_PACKAGES=(
  g++ cmake ninja-build pkg-config git python3 python3-venv python3-pip
  libcli11-dev libstb-dev nlohmann-json3-dev googletest libgtest-dev
  libre2-dev libicu-dev zlib1g-dev fonts-dejavu-core
  fonts-noto-color-emoji unicode-cldr-core
)
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

# --- 2. Python virtual environment with torch (LibTorch lives inside it) ------
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

# --- 3. Configure and build ---------------------------------------------------
if [ ! -f "$BUILD/build.ninja" ]; then
  log "configuring $BUILD"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release ${FEWSTEP_CMAKE_ARGS:-} >/dev/null
fi
log "building with $JOBS jobs"
cmake --build "$BUILD" -j "$JOBS"

# --- 4. What was asked for ------------------------------------------------------
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
    ;;
  build) ;;
  *) echo "usage: tools/setup.sh [demo|test|build]" >&2; exit 2 ;;
esac
