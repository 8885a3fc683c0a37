#!/usr/bin/env bash
# The GPU checks of the project in one command, for a lent CUDA machine (see docs/benchmarks.md). Run HERE first:
#   benchmarks/gpu/prepare.sh
# then with the device tool, from the repository root, carrying .whl and .gpu-data:
#   run(command="benchmarks/gpu/run.sh", carry=[".whl", ".gpu-data"], timeout_s=600)
# Arguments name the steps, in order (default: pipeline e2e, 590 s of limits, inside one 10-minute command
# and the 15-minute lease with the machine's start); the others: bench, gpu_check (590 s together with e2e).
#   pipeline    benchmarks/gpu/pipeline.py: Whisper tiny.en (PyTorch, float16), samba default, samba greedy,
#               on a 60-minute recording and 200 short clips -> pipeline.json (copy it to docs/bench/cuda/)
#   e2e         benchmarks/gpu/e2e.py: bundled model accuracy per dtype / CUDA graphs, many-input speed
#   bench       size-matched Whisper comparison (random weights, forced decoding) -> bench/
#   gpu_check   fused-kernel tests (pytest -m cuda), fused/torch parity, encoder and step timings
# Each step has its own time limit, a failing step does not stop the others, and every step writes its rows as
# it measures them; everything lands in $OUT (at most 8 files come back from the device tool): run.log (all
# output, with the GPU, driver and commit), pipeline.json, e2e.json, gpu_check.json, bench/.
# A dry run here, in the project venv, with reduced sizes (no wheels installed, CPU rows, never for docs/):
#   DEVICE=cpu TIME_SCALE=4 PIPELINE_ARGS="--minutes 2 --clips 10 --warmup-minutes 0.5" OUT=/tmp/dry \
#     benchmarks/gpu/run.sh pipeline
set -uo pipefail
OUT=${OUT:-/tmp/samba-gpu-out}
DEVICE=${DEVICE:-cuda}
read -ra PIPELINE_ARGS <<< "${PIPELINE_ARGS:-}"
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
if [ "$DEVICE" != cpu ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1
export TRITON_CACHE_AUTOTUNING=1  # later processes reuse the autotuning of earlier ones (a Triton knob; harmless where unknown)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
git rev-parse HEAD 2>/dev/null || cat .gpu-data/COMMIT 2>/dev/null || true
step() {  # step SECONDS NAME COMMAND...
  local limit=$(($1 * ${TIME_SCALE:-1})) name=$2; shift 2  # TIME_SCALE: longer limits for a slow dry run
  local start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
}
failed=()
# Triton compiles the Mamba-2 kernels in every new process (the first run, 2026-12-04, spent most of its 15 minutes
# there: pytest -m cuda alone took 160 s); each pipeline process warms up before it times.
for name in "${@:-pipeline e2e}"; do
  for one in $name; do
    case $one in
      pipeline)  # one process per system: a step stopped at its limit loses only its own rows
        step 120 pipeline-whisper python3 benchmarks/gpu/pipeline.py --device "$DEVICE" --systems whisper-tiny.en \
          --out "$OUT/pipeline.json" "${PIPELINE_ARGS[@]}"
        step 240 pipeline-samba-default python3 benchmarks/gpu/pipeline.py --device "$DEVICE" \
          --systems samba-default --warmup-minutes 2 --out "$OUT/pipeline.json" "${PIPELINE_ARGS[@]}"
        step 120 pipeline-samba-greedy python3 benchmarks/gpu/pipeline.py --device "$DEVICE" \
          --systems samba-greedy --warmup-minutes 2 --out "$OUT/pipeline.json" "${PIPELINE_ARGS[@]}" ;;
      e2e) step 110 e2e python3 benchmarks/gpu/e2e.py --device "$DEVICE" --inputs 8 ;;
      bench) step 200 bench python3 -m benchmarks.size_matched --device cuda --presets small --minutes 10,60 \
          --encoder-seconds 3600 --step-batches 64 --budget-minutes 3 --out "$OUT/bench" ;;
      gpu_check) step 150 gpu_check python3 benchmarks/gpu_check.py ;;
      *) echo "unknown step $one (pipeline, e2e, bench, gpu_check)"; failed+=("$one") ;;
    esac
  done
done
ls -la "$OUT"
[ -d "$OUT/bench" ] && ls -la "$OUT/bench"
# exit status: 0 when every step finished, 1 when any failed or ran out of time (named here)
[ ${#failed[@]} -eq 0 ] || { echo "failed steps: ${failed[*]}"; exit 1; }
