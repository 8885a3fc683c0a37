#!/usr/bin/env bash
# The fused test tier (pytest marker `fused`, tests/test_fused.py): the fused backend (mamba-ssm's Triton kernels)
# against the pure-PyTorch backend, run on the CPU under Triton's interpreter. From the repository root, in the
# project's venv with the tier's extra installed:
#   pip install -e '.[dev,fused-tier]' && tools/fused-tier.sh [PYTEST ARGS]
# Builds (once, into .whl/) and installs the pure-Python mamba-ssm wheel without its dependencies (the kernels need
# only triton and einops; its CUDA extensions and other dependencies are not used), then runs the tier with
# TRITON_INTERPRET=1 set for this one pytest run, and prints the tier's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import triton, einops" 2>/dev/null; then
  echo "the fused tier needs triton and einops: pip install -e '.[dev,fused-tier]'" >&2
  exit 1
fi
wheel=$(tools/mamba-wheel.sh "${MAMBA_WHEEL_DIR:-.whl}" | tail -n 1)
python -m pip install -q --no-deps "$wheel"
start=$SECONDS
status=0
TRITON_INTERPRET=1 python -m pytest -q -m fused tests/test_fused.py "$@" || status=$?
echo "fused tier: $((SECONDS - start)) s"
exit "$status"
