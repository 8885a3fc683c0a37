#!/usr/bin/env bash
# Run HERE (no GPU needed), from the repository root with the project venv active, before a GPU session:
# puts into .whl/ (gitignored) the wheels the GPU image lacks: a pure-Python mamba-ssm (Triton kernels only)
# and the project's own dependencies that are not in that image, except the ffmpeg binary (imageio-ffmpeg alone is 68 MB,
# over the 64 MiB a call carries: the checks read FLAC through soundfile). Then carry .whl with benchmarks/gpu/run.sh.
set -euo pipefail
rm -rf .whl && mkdir -p .whl
tools/mamba-wheel.sh .whl
# the versions this project is tested with on the CPU (pip freeze of .venv, 2026-11-26)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl \
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 ffmpeg-python==0.2.0 future==1.0.0 \
  silero-vad==6.2.3 jiwer==4.0.0 rapidfuzz==3.14.6 whisper-normalizer==0.1.15 more-itertools==11.2.1
ls -l .whl
du -sh .whl
