"""Throughput of `samba cluster transcribe` on a local Ray cluster against the plain batch mode, same files.

Generates ``--count`` short espeak-ng clips (about 2 to 6 s, made once, in ``--data``), then runs both commands
back to back as separate processes (model loading, Ray start-up and actor start-up included: what a user waits
for), ``--repeats`` times in alternating order, and prints files per second for each, the ratio, the load
average, and whether both wrote the same transcripts.

    python benchmarks/cluster_vs_local.py --count 200 --data /tmp/cluster-bench --local-args "--threads 1"
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "A large size in stockings is hard to sell.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A stiff breeze blew across the open field.",
]
VOICES = ["en-us", "en-us+f3", "en-gb", "en-us+m3", "en-gb+f2"]


def make_clips(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = folder / f"clip{index:04d}.wav"
        if path.exists():
            continue
        text = " ".join(SENTENCES[(index + k) % len(SENTENCES)] for k in range(1 + index % 2))
        voice, speed = VOICES[index % len(VOICES)], str(150 + (index * 7) % 40)
        subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(path), text], check=True)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def texts(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.glob("*.txt")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200, help="clips")
    parser.add_argument("--data", type=Path, default=Path("/tmp/cluster-bench"))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating which goes first")
    parser.add_argument("--local-args", default="", help="extra options of samba transcribe")
    parser.add_argument("--cluster-args", default="", help="extra options of samba cluster transcribe")
    args = parser.parse_args()
    clips = args.data / "clips"
    make_clips(clips, args.count)
    local_out, cluster_out = args.data / "local", args.data / "cluster"
    local = ["samba", "transcribe", str(clips), "-o", str(local_out), "--overwrite", "-q"]
    cluster = ["samba", "cluster", "transcribe", str(clips), "-o", str(cluster_out), "--overwrite", "-q"]
    local += args.local_args.split()
    cluster += args.cluster_args.split()
    print(f"{args.count} clips in {clips}; load average before: {os.getloadavg()}")
    results: dict[str, list[float]] = {"local": [], "cluster": []}
    for repeat in range(args.repeats):
        order = [("local", local), ("cluster", cluster)]
        for name, command in order if repeat % 2 == 0 else order[::-1]:
            seconds = timed(command)
            results[name].append(seconds)
            print(f"{name}: {seconds:.1f} s, {args.count / seconds:.2f} files/s, load {os.getloadavg()}")
    best = {name: min(times) for name, times in results.items()}
    print(
        f"best: local {args.count / best['local']:.2f} files/s, cluster {args.count / best['cluster']:.2f} "
        f"files/s, cluster/local {best['local'] / best['cluster']:.0%}"
    )
    same = texts(local_out) == texts(cluster_out)
    print(f"same transcripts: {same} ({len(texts(cluster_out))} files)")


if __name__ == "__main__":
    main()
