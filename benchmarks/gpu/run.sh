#!/usr/bin/env bash
# Every GPU check of the project in one command, for a lent CUDA machine (see docs/benchmarks.md). Run HERE first:
#   benchmarks/gpu/prepare.sh
# then with the device tool, from the repository root, carrying .whl:
#   run(command="benchmarks/gpu/run.sh", carry=[".whl"], timeout_s=600)   (about 10 minutes of the 15)
# Each step has its own time limit and a failing step does not stop the others; everything lands in $OUT
# (at most 8 files come back from the device tool):
#   run.log                  everything printed, with the GPU name, driver and commit
#   gpu_check.json           fused-kernel tests (pytest -m cuda), fused/torch parity, encoder and step timings
#   e2e.json                 bundled model: accuracy per dtype / CUDA graphs, many-input batching speed
#   bench/results.{json,md}, bench/*.png   size-matched Whisper comparison (random weights, forced decoding)
set -uo pipefail
OUT=${OUT:-/tmp/samba-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1
export TRITON_CACHE_AUTOTUNING=1  # later processes reuse the autotuning of earlier ones (a Triton knob; harmless where unknown)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
git rev-parse HEAD 2>/dev/null || true
step() {  # step SECONDS NAME COMMAND...
  local limit=$1 name=$2; shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@"
  echo "== $name: exit $? after $((SECONDS - start)) s"
}
# Order: what no GPU run has measured yet first. Triton compiles the Mamba-2 kernels in every new process (the
# first run, 2026-12-04, spent most of its 15 minutes there: pytest -m cuda alone took 160 s).
step 240 e2e python3 benchmarks/gpu/e2e.py --device cuda --inputs 8
step 200 bench python3 -m benchmarks.size_matched --device cuda --presets small --minutes 10,60 \
  --encoder-seconds 3600 --step-batches 64 --budget-minutes 3 --out "$OUT/bench"
step 150 gpu_check python3 benchmarks/gpu_check.py
ls -la "$OUT" "$OUT/bench" 2>/dev/null
