"""samba against Whisper tiny.en (PyTorch) on one device: x real time, WER and GPU memory of the real pipelines.

    benchmarks/gpu/run.sh                     # on a lent GPU (after benchmarks/gpu/prepare.sh here): $OUT/pipeline.json
    python benchmarks/gpu/pipeline.py --device cpu --minutes 2 --clips 10 --out /tmp/pipeline.json   # dry run

Inputs, built on the machine from what a run carries (no network):
- ``60min``: synthetic utterances of voices held out of training, shuffled and repeated with 0.3-1.5 s pauses
  (seeded) up to ``--minutes``; the reference is their texts in that order. The utterances are ``--data``/voices
  (the synthetic test split packed by ``benchmarks/gpu/pack.py --voices``) when it is there, else the four of
  ``samples/heldout-voices.flac`` (cut where its json says).
- ``200clips``: the ``--clips`` clips of ``--data``/clips (real speech of 1-10 s: Amazon Queen dev lines, packed
  as Ogg Vorbis by ``benchmarks/gpu/pack.py``), decoded to float32 once, before any timing.

Systems (``--systems``), each loaded, warmed up on a shorter input of the same kind (Triton compiles and CUDA
graphs are captured there; its seconds are reported as ``warmup_seconds``), then timed on the input:
- ``samba-default``: the bundled model, default decoding: ``transcribe`` for the recording, ``transcribe_many``
  for the clips;
- ``samba-greedy``: the same with ``lm=None`` (greedy CTC);
- ``whisper-tiny.en``: the converted weights (benchmarks/whisper_torch) in ``--whisper-dtype``, greedy, batches of
  ``--whisper-batch``: transformers' ASR pipeline with ``chunk_length_s=30`` for the recording, batched
  ``generate`` for the clips.

Audio goes in as arrays for both (no file decoding timed). WER after Whisper's English normaliser, summed over the
inputs (benchmarks/peers.py's count). ``gpu_memory_gib``: ``torch.cuda.max_memory_allocated`` over the timed call
(weights included; null on the CPU). Each row is added to ``--out`` (a JSON list; existing rows kept) as soon as
it is measured, so a run stopped at its time limit keeps its rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from samba_cli.atomic import write_atomically

# torch is imported where it is used: the CTC search workers are spawned and import this module again, and
# they must not load torch (samba_cli.decoding.pool)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "heldout-voices.flac"
SAMPLE_RATE = 16000
SAMPLE_GAP = 0.8  # seconds of silence before, between and after the sample's utterances (samples/README.md)
SYSTEMS = ("whisper-tiny.en", "samba-default", "samba-greedy")
GUARDED = ROOT / "docs" / "bench" / "cuda" / "pipeline.json"  # GPU rows only

log = logging.getLogger("pipeline")


def sample_utterances() -> list[tuple[np.ndarray, str]]:
    """The four utterances of samples/heldout-voices.flac with their texts."""
    audio, rate = sf.read(SAMPLE, dtype="float32")
    parts = json.loads(SAMPLE.with_suffix(".json").read_text())
    total = SAMPLE_GAP * (len(parts) + 1) + sum(p["duration"] for p in parts)
    if rate != SAMPLE_RATE or abs(len(audio) / rate - total) > 0.05:
        raise SystemExit(
            f"error: {SAMPLE}: {len(audio) / rate:.2f} s at {rate} Hz, its json says {total:.2f} s"
        )
    out, start = [], SAMPLE_GAP
    for part in parts:
        begin, end = round(start * rate), round((start + part["duration"]) * rate)
        out.append((audio[begin:end], part["text"]))
        start += part["duration"] + SAMPLE_GAP
    return out


def build_recording(
    utterances: list[tuple[np.ndarray, str]], minutes: float, seed: int = 0
) -> tuple[np.ndarray, str]:
    """(samples, reference): ``utterances`` shuffled, repeated and joined by 0.3-1.5 s pauses until ``minutes``
    long."""
    utterances = list(utterances)
    rng = random.Random(seed)
    pieces, texts, total, target = [], [], 0, int(minutes * 60 * SAMPLE_RATE)
    while total < target:
        rng.shuffle(utterances)
        for audio, text in utterances:
            gap = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), dtype=np.float32)
            pieces += [audio, gap]
            texts.append(text)
            total += len(audio) + len(gap)
            if total >= target:
                break
    return np.concatenate(pieces), " ".join(texts)


def load_packed(folder: Path, count: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The first ``count`` (all: None) clips packed in ``folder`` (``clips.jsonl``) as float32 arrays, with their
    texts."""
    manifest = folder / "clips.jsonl"
    if not manifest.exists():
        raise SystemExit(
            f"error: {manifest}: missing (run benchmarks/gpu/prepare.sh and carry {folder.parent})"
        )
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:count]
    clips = []
    for row in rows:
        audio, rate = sf.read(folder / row["audio"], dtype="float32")
        if rate != SAMPLE_RATE:
            raise SystemExit(f"error: {folder / row['audio']}: {rate} Hz, expected {SAMPLE_RATE}")
        clips.append(audio)
    return clips, [row["text"] for row in rows]


def recording_utterances(data: Path) -> tuple[list[tuple[np.ndarray, str]], str]:
    """The utterances the long recording is made of, and where they come from."""
    if (data / "voices" / "clips.jsonl").exists():
        clips, texts = load_packed(data / "voices")
        return list(zip(clips, texts, strict=True)), f"{data / 'voices'} ({len(clips)} utterances)"
    return sample_utterances(), f"{SAMPLE.name} (4 utterances)"


def _corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    from benchmarks.whisper_torch.check import corpus_wer  # one count for every benchmark of issue 49

    return corpus_wer(references, hypotheses)


def commit(data: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    stamp = data / "COMMIT"  # written by prepare.sh: the tree that travels may have no .git
    return stamp.read_text().strip() if stamp.exists() else "unknown"


def timed(device: str, call: Callable[[], list[str]]) -> tuple[list[str], float, float | None]:
    """(texts, seconds, peak GiB allocated on the GPU during the call)."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    texts = call()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return texts, seconds, (torch.cuda.max_memory_allocated() / 2**30 if cuda else None)


def samba_runner(device: str, greedy: bool) -> tuple[Callable, Callable]:
    from samba_cli.api import load_model

    model = load_model(device=device)
    # the search pool `samba transcribe` starts (0: auto for the device; the library's default is no pool)
    options = {"search_workers": 0}
    if greedy:
        options["lm"] = None

    def long(audio: np.ndarray) -> list[str]:
        segments, _ = model.transcribe(audio, **options)
        return [" ".join(s.text for s in segments)]

    def many(clips: list[np.ndarray]) -> list[str]:
        texts = [[] for _ in clips]
        events, _ = model.transcribe_many([(clip, f"clip{i}") for i, clip in enumerate(clips)], **options)
        for event in events:
            if event.error is not None:
                raise RuntimeError(f"clip {event.source}: {event.error}")
            if event.segment is not None:
                texts[event.source].append(event.segment.text)
        return [" ".join(t) for t in texts]

    return long, many


def whisper_runner(device: str, data: Path, dtype: str, batch: int) -> tuple[Callable, Callable]:
    import torch

    from benchmarks.whisper_torch.model import load_whisper, transcribe_clips, transcribe_long

    peer = load_whisper(data / "whisper-tiny.en", device=device, dtype=getattr(torch, dtype))
    log.info("whisper-tiny.en: %s weights, %s, batch %d", peer.weights, dtype, batch)
    return (
        lambda audio: [transcribe_long(peer, audio, batch_size=batch)],
        lambda clips: transcribe_clips(peer, clips, batch_size=batch),
    )


def add_row(out: Path, row: dict) -> None:
    rows = json.loads(out.read_text()) if out.exists() else []
    rows.append(row)
    write_atomically(out, lambda f: f.write(json.dumps(rows, indent=1) + "\n"))
    log.info("%s", json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--inputs", default="60min,200clips", help="which inputs to run")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the long recording")
    parser.add_argument("--clips", type=int, default=200, help="short clips")
    parser.add_argument(
        "--warmup-minutes", type=float, default=5.0, help="recording the long-form warm-up uses"
    )
    parser.add_argument("--data", type=Path, default=ROOT / ".gpu-data", help="what prepare.sh packed")
    parser.add_argument("--whisper-dtype", help="float16 on CUDA, float32 on the CPU unless given")
    parser.add_argument("--whisper-batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "pipeline.json")
    args = parser.parse_args()
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cuda = args.device.startswith("cuda")
    if not cuda and args.out.resolve() == GUARDED.resolve():
        raise SystemExit(
            f"error: {GUARDED} holds GPU rows only: give --out elsewhere for a {args.device} run"
        )
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)"
    whisper_dtype = args.whisper_dtype or ("float16" if cuda else "float32")
    stamp = commit(args.data)
    inputs = args.inputs.split(",")
    recording = reference = clips = clip_texts = None
    if "60min" in inputs:
        utterances, origin = recording_utterances(args.data)
        log.info("long recording made of %s", origin)
        recording, reference = build_recording(utterances, args.minutes)
        warm_recording = build_recording(utterances, min(args.warmup_minutes, args.minutes), seed=1)[0]
    if "200clips" in inputs:
        clips, clip_texts = load_packed(args.data / "clips", args.clips)
    log.info(
        "device %s, commit %s; recording %.1f min; %d clips, %.1f s",
        device_name,
        stamp,
        0 if recording is None else len(recording) / SAMPLE_RATE / 60,
        len(clips or []),
        sum(len(c) for c in clips or []) / SAMPLE_RATE,
    )
    for system in args.systems.split(","):
        if system == "whisper-tiny.en":
            long, many = whisper_runner(args.device, args.data, whisper_dtype, args.whisper_batch)
            settings = {
                "dtype": whisper_dtype,
                "batch_size": args.whisper_batch,
                "decoding": "greedy",
                "long_form": "transformers pipeline, chunk_length_s=30, return_timestamps",
            }
        elif system in ("samba-default", "samba-greedy"):
            long, many = samba_runner(args.device, greedy=system == "samba-greedy")
            settings = {"dtype": "auto", "decoding": "greedy CTC" if system == "samba-greedy" else "default"}
        else:
            raise SystemExit(f"error: --systems: unknown system {system!r} (known: {', '.join(SYSTEMS)})")
        for name in inputs:
            if name == "60min":
                run, warm_input, data, refs = long, warm_recording, recording, [reference]
                audio_seconds = len(recording) / SAMPLE_RATE
            elif name == "200clips":
                run, warm_input, data, refs = many, clips[: min(16, len(clips))], clips, clip_texts
                audio_seconds = sum(len(c) for c in clips) / SAMPLE_RATE
            else:
                raise SystemExit(f"error: --inputs: unknown input {name!r} (known: 60min, 200clips)")
            _, warm_seconds, _ = timed(args.device, lambda run=run, w=warm_input: run(w))
            texts, seconds, memory = timed(args.device, lambda run=run, d=data: run(d))
            add_row(
                args.out,
                {
                    "system": system,
                    "input": name,
                    "x_real_time": round(audio_seconds / seconds, 1),
                    "wer": round(_corpus_wer(refs, texts), 2),
                    "gpu_memory_gib": None if memory is None else round(memory, 3),
                    "device": device_name,
                    "commit": stamp,
                    "audio_seconds": round(audio_seconds, 1),
                    "seconds": round(seconds, 2),
                    "warmup_seconds": round(warm_seconds, 2),
                    "settings": settings,
                },
            )
        del long, many
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
