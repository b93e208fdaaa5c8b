#!/usr/bin/env bash
# The bench suite on the GPU device in one call of at most 5 minutes, build
# included: configures the whole project against the device's own LibTorch
# for sm_80 and sm_90, builds the CLI, the CUDA tests and the benchmarks,
# runs the CUDA attention tests, the benchmarks (attention, sampler
# overhead, one UNet step, a full generation) and a CUDA profile, and prints
# a summary table last. Logs, JSON and the profile trace go to $OUT.
#
# Needs third_party_carry/ (bench/prepare_device_carry.sh) in the run's carry.
# If the full project does not configure there (the top-level CMake needs
# RE2, ICU and zlib development files, which the device may lack), it falls
# back to the kernels-only device build (kernels/device) and says so.
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

full=1
if ! timeout 90 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
     -DCMAKE_CUDA_ARCHITECTURES="80;90" -DFEWSTEP_THIRD_PARTY="$carry" -DFEWSTEP_BENCH=ON \
     -DFEWSTEP_TESTS=ON > "$out/configure.log" 2>&1; then
  full=0
  echo "full configure failed ($(elapsed) s):"; grep -m5 -iE "could not find|not found|error" "$out/configure.log"
  build=/tmp/fewstep_bench_build_kernels
  timeout 60 cmake -S "$root/kernels/device" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CUDA_ARCHITECTURES="80;90" -DFEWSTEP_THIRD_PARTY="$carry" > "$out/configure_kernels.log" 2>&1 ||
    { tail -20 "$out/configure_kernels.log"; exit 1; }
fi
if [ $full = 1 ]; then
  targets="fewstep test_kernels bench_attention bench_sampler_overhead bench_unet_step bench_generate test_models"
else
  targets="fewstep_ops test_kernels bench_attention"
fi
if ! timeout 170 ninja -C "$build" -j "$(nproc)" $targets > "$out/build.log" 2>&1; then
  echo "build failed or timed out ($(elapsed) s):"; grep -m20 -E "error|FAILED" "$out/build.log"; tail -5 "$out/build.log"
fi
echo "configure + build: $(elapsed) s (full project: $full)"

models="$build/test_models"
run() {  # run NAME TIMEOUT CMD...: log to $out/NAME.txt, record the status
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "$name $?" >> "$out/status.txt"
}
: > "$out/status.txt"
run tests_cuda 45 "$build/tests/kernels/test_kernels" --gtest_filter='AttentionCuda*:*Rewrite*'
run bench_attention_fp16 40 "$build/bench/attention/bench_attention" --device cuda --dtype fp16 --json "$out/attention_fp16.json"
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
