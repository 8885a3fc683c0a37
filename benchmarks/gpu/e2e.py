"""End-to-end checks of the bundled model on a device: accuracy and speed of the real pipeline.

    python benchmarks/gpu/e2e.py --device cuda        # JSON also written to $OUT/e2e.json when OUT is set

1. ``samples/heldout-voices.flac`` transcribed on the CPU in float32 (the reference) and on ``--device`` in each
   dtype (bfloat16 and float32 on CUDA), with CUDA graphs on and off, with the ctc and attention decoders: WER
   against the sample's transcript, agreement with the CPU text, and seconds.
2. Many inputs (``--inputs`` copies of the sample) with ``transcribe_many`` for encoder batches of 0 and 600 s and
   decoder batches of 16 and 64: x real time.
Runs on a CPU too (``--device cpu``), where part 1 compares float32 with itself.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import soundfile as sf
import torch

from samba_cli.api import load_model
from samba_cli.train.evaluate import count_errors, normalize

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "heldout-voices.flac"


def transcribe(model, samples, **options) -> tuple[str, float]:
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    segments, _ = model.transcribe(samples, **options)
    text = " ".join(s.text for s in segments)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return text, time.perf_counter() - start


def save(results: dict) -> None:
    """Write what is measured so far to $OUT/e2e.json (after every row: a run stopped at its time limit keeps
    its rows)."""
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "e2e.json").write_text(json.dumps(results, indent=2) + "\n")


def wer(reference: str, hypothesis: str) -> float:
    return count_errors(normalize(reference), normalize(hypothesis)).wer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--inputs", type=int, default=64, help="copies of the sample in part 2")
    args = parser.parse_args()
    samples = sf.read(SAMPLE, dtype="float32")[0]
    reference = " ".join(SAMPLE.with_suffix(".txt").read_text().split())
    results: dict = {
        "device": args.device,
        "sample_seconds": len(samples) / 16000,
        "accuracy": [],
        "many": [],
    }
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    cpu = load_model(device="cpu")
    dtypes = ["bfloat16", "float32"] if args.device.startswith("cuda") else ["float32"]
    for decoder in ("ctc", "attention"):
        base, _ = transcribe(cpu, samples, decoder=decoder)
        for dtype in dtypes:
            model = load_model(device=args.device, dtype=dtype)
            results.setdefault("backend", model.model.backend)  # fused (mamba-ssm's Triton kernels) or torch
            for graphs in (True, False) if args.device.startswith("cuda") else (False,):
                transcribe(model, samples, decoder=decoder, cuda_graphs=graphs)  # warm-up (graph capture)
                text, seconds = transcribe(model, samples, decoder=decoder, cuda_graphs=graphs)
                row = {
                    "decoder": decoder,
                    "dtype": dtype,
                    "cuda_graphs": graphs,
                    "seconds": round(seconds, 4),
                    "wer": round(wer(reference, text), 4),
                    "cpu_wer": round(wer(reference, base), 4),
                    "differs_from_cpu_words": round(wer(base, text), 4),
                    "same_text_as_cpu": text == base,
                }
                results["accuracy"].append(row)
                save(results)
                print(json.dumps(row), flush=True)
    model = load_model(device=args.device)
    inputs = [samples] * args.inputs
    audio = args.inputs * len(samples) / 16000
    for decoder in ("ctc", "attention"):
        for encoder_batch in (0.0, 600.0):
            for batch_size in (16, 64):
                options = {
                    "decoder": decoder,
                    "encoder_batch_seconds": encoder_batch,
                    "batch_size": batch_size,
                }
                for _ in range(2):  # the first run captures graphs and warms up
                    if model.device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    events, _ = model.transcribe_many(inputs, **options)
                    segments = sum(event.segment is not None for event in events)
                    if model.device.type == "cuda":
                        torch.cuda.synchronize()
                    seconds = time.perf_counter() - start
                row = {
                    **options,
                    "inputs": args.inputs,
                    "segments": segments,
                    "seconds": round(seconds, 3),
                    "x_real_time": round(audio / seconds, 1),
                }
                results["many"].append(row)
                save(results)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
