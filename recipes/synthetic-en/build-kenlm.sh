#!/usr/bin/env bash
# Build KenLM's lmplz (the n-gram estimator used by recipes/synthetic-en/lm.py) into build/kenlm/bin/.
# KenLM has no binary wheel and no Debian package; its PyPI source distribution holds the whole C++ tree.
# Needs: a C++ compiler, cmake, Boost (program_options, system, thread) and zlib, e.g. on Debian:
#   apt-get install -y build-essential cmake libboost-program-options-dev libboost-system-dev \
#     libboost-thread-dev libboost-test-dev zlib1g-dev
set -euo pipefail

VERSION=${KENLM_VERSION:-0.3.0}
OUT=${OUT:-build/kenlm}
mkdir -p "$OUT"
[ -x "$OUT/bin/lmplz" ] && { echo "$OUT/bin/lmplz already built"; exit 0; }

SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
pip download --no-deps "kenlm==$VERSION" -d "$SRC"  # the source distribution: kenlm has no wheel
tar xzf "$SRC/kenlm-$VERSION.tar.gz" -C "$SRC"
cmake -S "$SRC/kenlm-$VERSION" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release > "$SRC/cmake.log"
cmake --build "$SRC/build" --target lmplz -j "$(nproc)"
mkdir -p "$OUT/bin"
cp "$SRC/build/bin/lmplz" "$OUT/bin/"
echo "built $OUT/bin/lmplz"
