#!/usr/bin/env bash
# Run HERE (no GPU needed), from the repository root with the project venv active, before a GPU session.
#   benchmarks/gpu/prepare.sh
# 1. .whl/ (gitignored): the wheels the GPU image lacks: a pure-Python mamba-ssm (Triton kernels only) and the
#    project's own dependencies that are not in that image, except the ffmpeg binary (imageio-ffmpeg alone is 68 MB,
#    over the 64 MiB a call carries: the checks read FLAC and Ogg through soundfile). silero-vad is cut to the one
#    model file samba loads (silero_vad.jit): its wheel holds eight, 11 MB.
# 2. .gpu-data/ (gitignored), for benchmarks/gpu/pipeline.py: 200 real clips of 1-10 s (Ogg Vorbis) from $CLIPS
#    and the int8 Whisper tiny.en from $WHISPER (make it once with python -m benchmarks.whisper_torch.convert),
#    plus COMMIT (the tree's commit; the copy that travels may have no .git), and when $VOICES exists (the
#    synthetic test split: voices held out of training) its utterances for the long recording (else the run uses
#    the four of samples/heldout-voices.flac).
# 3. Checks that the tree that travels (tracked and untracked files, .whl, .gpu-data) fits in 64 MiB.
# Then carry both with benchmarks/gpu/run.sh: run(command="benchmarks/gpu/run.sh", carry=[".whl", ".gpu-data"]).
set -euo pipefail
CLIPS=${CLIPS:-/work/data/amazon-queen/dev.jsonl}
WHISPER=${WHISPER:-/work/data/whisper-tiny-en-torch}
VOICES=${VOICES:-data/synthetic-en/test.jsonl}
rm -rf .whl && mkdir -p .whl
tools/mamba-wheel.sh .whl
# the versions this project is tested with on the CPU (pip freeze of .venv, 2026-11-26)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl \
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 ffmpeg-python==0.2.0 future==1.0.0 \
  silero-vad==6.2.3 jiwer==4.0.0 rapidfuzz==3.14.6 whisper-normalizer==0.1.15 more-itertools==11.2.1
python3 - .whl/silero_vad-*.whl <<'PY'
import os, sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as src, zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if item.filename.startswith("silero_vad/data/") and not item.filename.endswith("/silero_vad.jit"):
            continue  # pip does not check RECORD against the files it unpacks
        dst.writestr(item, src.read(item.filename))
os.replace(path + ".tmp", path)
PY
ls -l .whl
rm -rf .gpu-data && mkdir -p .gpu-data
voices=()  # the synthetic test split (held-out voices), when built: the long recording is made of it
[ -f "$VOICES" ] && voices=(--voices "$VOICES")
PYTHONPATH=$PWD/src:$PWD python3 benchmarks/gpu/pack.py --clips "$CLIPS" --count 200 --whisper "$WHISPER" \
  "${voices[@]}" --out .gpu-data
git describe --always --dirty > .gpu-data/COMMIT
travelling=$( { git ls-files -z --cached --others --exclude-standard; find .whl .gpu-data -type f -print0; } \
  | du -cb --files0-from=- | tail -1 | cut -f1)
echo "the tree that travels: $travelling bytes ($((travelling / 1048576)) MiB of 64)"
[ "$travelling" -le $((64 * 1048576)) ] || { echo "over 64 MiB: carry less"; exit 1; }
