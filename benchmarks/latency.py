"""Start-up and per-file costs: what a user waits for on short inputs.

1. ``samba --version`` and ``samba --help`` from the shell (best of 3).
2. One 5-second clip from the shell, cold process, default options and ``--lm none`` (best of 3).
3. The same clip again and again in one process through the library (``load_model()`` once, then
   ``transcribe()``): the median of the 2nd to 6th call.
4. Per-file overhead: ``--count`` clips of 1-3 s (utterances of a manifest cut to a seeded random length) as
   files in one folder, against the same audio joined into one file (0.5 s of silence between clips), both with
   ``samba transcribe``; overhead per file = (folder time - joined time) / count.

    python benchmarks/latency.py data/synthetic-en/test.jsonl --count 500

Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def wall(command: list[str], repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        best = min(best, time.perf_counter() - start)
    return best


def clips(manifest: Path, count: int, seed: int) -> list[np.ndarray]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        for row in rows:
            audio, rate = sf.read(manifest.parent / row["audio"], dtype="float32")
            assert rate == RATE, f"{row['audio']}: expected 16 kHz"
            length = int(rng.uniform(1.0, 3.0) * RATE)
            out.append(audio[:length])
            if len(out) == count:
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path, help="JSONL manifest of 16 kHz utterances")
    ap.add_argument("--count", type=int, default=500, help="short files for the per-file overhead")
    ap.add_argument("--samba", default=shutil.which("samba") or "samba")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    samba = args.samba
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    five = min(rows, key=lambda r: abs(r["duration"] - 5.0))
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="samba-latency-") as tmp:
        work = Path(tmp)
        clip = work / "clip.wav"
        audio, _ = sf.read(args.manifest.parent / five["audio"], dtype="float32")
        sf.write(clip, audio, RATE)
        results["samba --version"] = wall([samba, "--version"], 3)
        results["samba --help"] = wall([samba, "--help"], 3)
        for name, extra in (("default", []), ("--lm none", ["--lm", "none"])):
            out = work / "out"
            command = [samba, "transcribe", str(clip), "-o", str(out), "--overwrite", "-q", *extra]
            results[f"{len(audio) / RATE:.1f} s clip from the shell, cold, {name}"] = wall(command, 3)

        code = (
            "import statistics, sys, time\n"
            "from samba_cli.api import load_model\n"
            "model = load_model()\n"
            "kwargs = {} if sys.argv[2] == 'default' else {'lm': None}\n"
            "times = []\n"
            "for _ in range(6):\n"
            "    start = time.perf_counter()\n"
            "    list(model.transcribe(sys.argv[1], **kwargs)[0])\n"
            "    times.append(time.perf_counter() - start)\n"
            "print(times[0], statistics.median(times[1:]))\n"
        )
        for name in ("default", "--lm none"):
            first, later = map(
                float,
                subprocess.run(
                    [sys.executable, "-c", code, str(clip), name], check=True, capture_output=True, text=True
                ).stdout.split(),
            )
            results[f"library, 1st call, {name}"] = first
            results[f"library, 2nd-6th calls (median), {name}"] = later

        short = clips(args.manifest, args.count, args.seed)
        folder = work / "clips"
        folder.mkdir()
        for i, samples in enumerate(short):
            sf.write(folder / f"{i:04d}.wav", samples, RATE)
        gap = np.zeros(RATE // 2, dtype=np.float32)
        joined = work / "joined.wav"
        sf.write(joined, np.concatenate([x for samples in short for x in (samples, gap)]), RATE)
        seconds = sum(len(x) for x in short) / RATE
        for name, extra in (("default", []), ("--lm none", ["--lm", "none"])):
            out = work / "out-many"
            base = [samba, "transcribe", "-o", str(out), "--overwrite", "-q", *extra]
            many = wall([*base[:2], str(folder), *base[2:]])
            one = wall([*base[:2], str(joined), *base[2:]])
            results[f"{len(short)} files of 1-3 s ({seconds:.0f} s), {name}"] = many
            results[f"the same audio joined in one file, {name}"] = one
            results[f"overhead per file, {name}"] = (many - one) / len(short)
    load = os.getloadavg()
    print(
        f"{len(os.sched_getaffinity(0))} CPUs, load after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print("| measurement | seconds |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
