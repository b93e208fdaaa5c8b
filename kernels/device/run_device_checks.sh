#!/usr/bin/env bash
# One prepared GPU-device run for issue 5 (about 5 minutes): builds the
# kernels for sm_80 and sm_90, runs the CUDA tests (and compute-sanitizer's
# memcheck on a few of them), times bench/attention in fp16 and bf16, and
# prints a short summary last. Logs and JSON go to $OUT.
# Needs third_party_carry/ (kernels/device/prepare_carry.sh) carried along.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/fewstep_device_out}
build=/tmp/fewstep_device_build
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.csv" 2>&1
python3 -c 'import torch; print(torch.__version__, torch.version.cuda)' > "$out/torch.txt" 2>&1
prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')

start=$(date +%s)
if ! cmake -S "$root/kernels/device" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
     -DCMAKE_CUDA_ARCHITECTURES="80;90" -DFEWSTEP_THIRD_PARTY="$root/third_party_carry" > "$out/configure.log" 2>&1; then
  tail -30 "$out/configure.log"; exit 1
fi
if ! ninja -C "$build" fewstep_ops test_kernels bench_attention > "$out/build.log" 2>&1; then
  grep -m20 -E "error|FAILED" "$out/build.log"; tail -20 "$out/build.log"; exit 1
fi
echo "build: $(( $(date +%s) - start )) s"

"$build/tests/kernels/test_kernels" --gtest_filter='AttentionCuda*:*Rewrite*' > "$out/tests.log" 2>&1
tests_rc=$?
timeout 120 compute-sanitizer --tool memcheck "$build/tests/kernels/test_kernels" \
  --gtest_filter='AttentionCuda.MisalignedRowsGoThroughACopy:AttentionCudaSweep.*/Half' > "$out/memcheck.log" 2>&1
memcheck_rc=$?
for dtype in fp16 bf16; do
  timeout 150 "$build/bench/attention/bench_attention" --device cuda --dtype "$dtype" \
    --json "$out/bench_$dtype.json" > "$out/bench_$dtype.txt" 2>&1
done

echo "== tests (rc $tests_rc) =="
grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|Expected|seed" "$out/tests.log" | head -40
echo "== memcheck (rc $memcheck_rc) =="
grep -E "ERROR SUMMARY|PASSED|FAILED" "$out/memcheck.log" | tail -5
for dtype in fp16 bf16; do echo "== bench $dtype =="; cat "$out/bench_$dtype.txt"; done
