#!/usr/bin/env bash
# The sampler-family sweeps behind bench/RESULTS.md "Where the samplers stand"
# (issue 15). Usage: bench/samplers/where_they_stand.sh BUILD_DIR OUT_DIR
#   1. the whole registry on the embedded model at 4, 8, 16, 20 and 32 steps
#      (dpm_adaptive at rtol 0.1, 0.05, 0.02, 0.01, 0.005), 4 prompts x seed 0,
#      against unipc at 250 steps from the same noise;
#   2. dpm_adaptive against fixed-step dpmpp_2m on analytic:gaussian (fp64,
#      exact reference): NFE against error.
# PSNR, RMSE and NFE do not depend on the machine's load; wall times do.
set -euo pipefail
build=${1:?build dir}
out=${2:?output dir}
fewstep="$build/fewstep"
samplers=$("$fewstep" samplers --json | python3 -c 'import json,sys; print(",".join(s["name"] for s in json.load(sys.stdin)))')
printf '%s\n' "red apple" "cat face" "snowman" "grinning face" > "$out.prompts.txt"
"$fewstep" sweep --samplers "$samplers" --steps 4,8,16,20,32 --tolerances 0.1,0.05,0.02,0.01,0.005 \
  --prompts "$out.prompts.txt" --seeds 0 --threads 2 --quiet --out "$out/emoji"
"$fewstep" sweep --model analytic:gaussian:shape=3x16x16 --dtype fp64 --timestep-spacing trailing \
  --samplers dpm_adaptive,dpmpp_2m --steps 4,6,8,12,16,24,32,48,64 \
  --tolerances 0.2,0.1,0.05,0.02,0.01,0.005,0.002,0.001 --sampler-option atol=1e-6 \
  --seeds 0 --threads 1 --quiet --out "$out/gaussian"
