"""Training throughput per model preset: wall and process CPU time of optimizer steps 2..N (step 1 warms up).

Trains each preset for a few steps on a CutSet or JSONL manifest (lhotse batches for a CutSet) and prints one
JSON line per preset: seconds per step and audio seconds trained per wall second and per CPU second. CPU time
is the better number on a shared machine; on a GPU (``--device cuda``) use wall time.

    python benchmarks/train_throughput.py cuts.jsonl.gz tok.model --presets tiny:5,small:3,base:3 \
        --batch-seconds 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from samba_cli.train.config import TrainConfig
from samba_cli.train.loop import train


def measure(config: TrainConfig) -> dict:
    marks: list[tuple[float, float, float, int]] = []

    def hook(record: dict) -> bool:
        marks.append((time.perf_counter(), time.process_time(), record["seconds"], record["utterances"]))
        return False

    train(config, on_step=hook)
    (wall0, cpu0, _, _), rest = marks[0], marks[1:]
    wall, cpu = rest[-1][0] - wall0, rest[-1][1] - cpu0
    audio = sum(mark[2] for mark in rest)
    return {
        "preset": config.preset,
        "steps": len(rest),
        "audio_seconds": round(audio, 1),
        "utterances": sum(mark[3] for mark in rest),
        "wall_s_per_step": round(wall / len(rest), 2),
        "cpu_s_per_step": round(cpu / len(rest), 2),
        "audio_s_per_wall_s": round(audio / wall, 2),
        "audio_s_per_cpu_s": round(audio / cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="CutSet or JSONL manifest")
    parser.add_argument("tokenizer", help="sentencepiece model")
    parser.add_argument("--presets", default="tiny:5,small:3,base:3", help="PRESET:STEPS,... (steps >= 2)")
    parser.add_argument("--batch-seconds", type=float, default=20.0, help="--max-batch-seconds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for spec in args.presets.split(","):
        name, steps = spec.split(":")
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(
                train_manifest=args.manifest,
                tokenizer=args.tokenizer,
                out_dir=out,
                preset=name,
                max_steps=max(2, int(steps)),
                max_batch_seconds=args.batch_seconds,
                max_batch_utterances=256,
                buckets=2,
                accumulate=1,
                workers=0,  # data loading and features count in the process's CPU time
                threads=args.threads,
                device=args.device,
                warmup_steps=2,
                log_every=1000,
                save_every=1000,
            )
            print(json.dumps(measure(config)), flush=True)


if __name__ == "__main__":
    main()
