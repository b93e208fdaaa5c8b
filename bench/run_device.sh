#!/usr/bin/env bash
# The bench suite on the GPU device in one call of at most 5 minutes, build
# included: configures the whole project against the device's own LibTorch
# for sm_80 and sm_90, builds the CLI, the CUDA tests and the benchmarks,
# runs the CUDA attention tests, the benchmarks (attention, sampler
# overhead, one UNet step, a full generation) and a CUDA profile, and prints
# a summary table last. Logs, JSON and the profile trace go to $OUT.
#
# Needs third_party_carry/ (bench/prepare_device_carry.sh) in the run's carry.
# If the full project does not configure there with its tests, it builds it
# without them and takes the CUDA tests from the kernels-only device build
# (kernels/device); if it does not configure at all (the top-level CMake
# needs RE2, ICU and zlib development files, which the device may lack), it
# runs the kernels-only build's tests and attention bench, and says so.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/fewstep_bench_out}
build=/tmp/fewstep_bench_build
mkdir -p "$out"
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  nvcc --version | tail -1
  nproc
} > "$out/versions.txt" 2>&1
prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
carry="$root/third_party_carry"
[ -d "$carry/stb" ] || echo "warning: $carry/stb missing (run bench/prepare_device_carry.sh here first)"

# Configure: the whole project (tests on, then off), else kernels only.
cfg() {  # cfg SOURCE BUILD LOG EXTRA...
  local src=$1 dir=$2 log=$3; shift 3
  timeout 90 cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CUDA_ARCHITECTURES="80;90" \
    -DFEWSTEP_THIRD_PARTY="$carry" "$@" > "$out/$log" 2>&1
}
full=1 tests_build="$build"
if ! cfg "$root" "$build" configure.log -DFEWSTEP_BENCH=ON -DFEWSTEP_TESTS=ON; then
  echo "full configure with tests failed: $(grep -m1 -A2 'CMake Error' "$out/configure.log" | tr '\n' ' ')"
  rm -rf "$build"
  if cfg "$root" "$build" configure_notests.log -DFEWSTEP_BENCH=ON -DFEWSTEP_TESTS=OFF; then
    # CUDA tests from the kernels-only device build, in parallel with the main build.
    tests_build=/tmp/fewstep_bench_build_kernels
    (cfg "$root/kernels/device" "$tests_build" configure_kernels.log &&
       timeout 200 ninja -C "$tests_build" -j 6 test_kernels > "$out/build_kernels.log" 2>&1) &
  else
    full=0 tests_build=/tmp/fewstep_bench_build_kernels build=$tests_build
    echo "full configure failed ($(elapsed) s): $(grep -m1 -A2 'CMake Error' "$out/configure_notests.log" | tr '\n' ' ')"
    cfg "$root/kernels/device" "$build" configure_kernels.log || { tail -20 "$out/configure_kernels.log"; exit 1; }
  fi
fi
if [ $full = 1 ]; then
  targets="fewstep bench_attention bench_sampler_overhead bench_unet_step bench_generate test_models"
  [ "$tests_build" = "$build" ] && targets="$targets test_kernels"
else
  targets="fewstep_ops test_kernels bench_attention"
fi
if ! timeout 170 ninja -C "$build" -j "$(nproc)" $targets > "$out/build.log" 2>&1; then
  echo "build failed or timed out ($(elapsed) s):"; grep -m20 -E "error|FAILED" "$out/build.log"; tail -5 "$out/build.log"
fi
wait
echo "configure + build: $(elapsed) s (full project: $full; CUDA tests from $tests_build)"

models="$build/test_models"
run() {  # run NAME TIMEOUT CMD...: log to $out/NAME.txt, record the status
  local name=$1 limit=$2; shift 2
  if [ "$(elapsed)" -gt 270 ]; then echo "$name skipped (5-minute budget)" >> "$out/status.txt"; return; fi
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "$name $?" >> "$out/status.txt"
}
: > "$out/status.txt"
run tests_cuda 30 "$tests_build/tests/kernels/test_kernels" --gtest_filter='AttentionCuda*:*Rewrite*'
run bench_attention_fp16 30 "$build/bench/attention/bench_attention" --device cuda --dtype fp16 --json "$out/attention_fp16.json"
if [ $full = 1 ]; then
  run bench_sampler_overhead 20 "$build/bench/sampler_overhead/bench_sampler_overhead" --json "$out/sampler_overhead.json"
  for dt in fp32 fp16; do
    run "bench_unet_step_$dt" 20 "$build/bench/unet_step/bench_unet_step" --device cuda --dtype "$dt" --batch 2 \
      --repeats 20 --model "$models/tiny-blocks" --json "$out/unet_step_$dt.json"
  done
  run bench_generate 30 "$build/bench/generate/bench_generate" --device cuda --dtype fp16 --steps 1,4,8,20 \
    --model "$models/tiny-latent" --json "$out/generate.json"
  run profile_cuda 30 "$build/fewstep" profile --model "$models/tiny-blocks" --device cuda --dtype fp16 --steps 4 \
    --prompt "a red apple" --out "$out/profile"
fi

echo "== CUDA tests =="; grep -E "^\[  (PASSED|FAILED) |Failure" "$out/tests_cuda.txt" | head -20
[ -f "$out/profile_cuda.txt" ] && { echo "== profile (CUDA, fp16) =="; head -14 "$out/profile_cuda.txt"; grep -A20 "Pipeline stages" "$out/profile_cuda.txt"; }
echo "== status (name exit-code; 124 = timed out) =="; cat "$out/status.txt"
echo "== summary ($(elapsed) s in all; $(head -1 "$out/versions.txt")) =="
python3 - "$out" <<'PY'
import json, pathlib, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:
        doc = json.loads(f.read_text())
    except Exception as e:
        rows.append((f.stem, "unreadable: %s" % e, "")); continue
    for r in doc.get("rows", []):
        ms = r.get("median_ms", r.get("ms", r.get("run_ms", "")))
        keys = [f"{k}={v}" for k, v in r.items() if isinstance(v, (str, int)) and not isinstance(v, bool)][:8]
        rows.append((f.stem, " ".join(keys), ms if not isinstance(ms, float) else "%.4g" % ms))
w = max([len(a) for a, _, _ in rows] + [5])
print(f"{'bench':<{w}}  {'median_ms':>10}  setting")
for a, b, c in rows:
    print(f"{a:<{w}}  {str(c):>10}  {b}")
PY
