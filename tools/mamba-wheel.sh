#!/usr/bin/env bash
# Builds a pure-Python wheel of mamba-ssm (its Triton kernels, no CUDA extension compiled) into DIR (default .whl/,
# gitignored), unless that wheel is there already. Run from any directory, in a venv with torch installed (mamba-ssm's
# setup imports it). Used by tools/fused-tier.sh (the CPU test tier) and benchmarks/gpu/prepare.sh (GPU machines have
# no network). The version is the one the fused backend is tested with.
#   tools/mamba-wheel.sh [DIR]
set -euo pipefail
MAMBA_VERSION=2.3.2.post1
dir=${1:-.whl}
wheel="$dir/mamba_ssm-$MAMBA_VERSION-py3-none-any.whl"
if [ ! -f "$wheel" ]; then
  mkdir -p "$dir"
  # --no-build-isolation builds against this venv's torch; wheel lets an older setuptools write the wheel.
  python -m pip install -q setuptools wheel packaging
  # FORCE_BUILD: do not look for a prebuilt CUDA wheel online; SKIP_CUDA_BUILD: Python files only.
  MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE \
    python -m pip wheel -q --no-deps --no-build-isolation "mamba-ssm==$MAMBA_VERSION" -w "$dir"
fi
echo "$wheel"
