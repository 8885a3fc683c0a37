"""Long-form accuracy and speed against the window length.

Concatenates utterances of a JSONL manifest (with random pauses) into one long recording, transcribes it with
several window lengths, and reports WER (after English normalisation), x real time and the process peak RSS so far (run windows in
increasing order, so growth is attributable).
This is the measurement behind the default window length (docs/windowing.md).

    python benchmarks/longform.py MODEL data/synthetic-en/test.jsonl --minutes 10 --windows 30,60,120,300,600
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
from whisper_normalizer.english import EnglishTextNormalizer

from samba_cli.api import load_model


def build_recording(manifest: Path, minutes: float, seed: int) -> tuple[np.ndarray, str]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    pieces, texts, total = [], [], 0
    target = int(minutes * 60 * 16000)
    while total < target:
        for row in rows:
            path = Path(row["audio"])
            audio, rate = sf.read(path if path.is_absolute() else manifest.parent / path, dtype="float32")
            assert rate == 16000, f"{path}: expected 16 kHz"
            gap = np.zeros(int(rng.uniform(0.3, 1.5) * 16000), dtype=np.float32)
            pieces += [audio, gap]
            texts.append(row["text"])
            total += len(audio) + len(gap)
            if total >= target:
                break
    return np.concatenate(pieces), " ".join(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--windows", default="30,60,120,300,600", help="window lengths in seconds")
    parser.add_argument("--decoder", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    samples, reference = build_recording(args.manifest, args.minutes, args.seed)
    normalise = EnglishTextNormalizer()
    model = load_model(args.model, device="cpu", threads=args.threads)
    duration = len(samples) / 16000
    print(f"recording: {duration / 60:.1f} min, {len(reference.split())} words", file=sys.stderr)
    results = []
    for window in (float(w) for w in args.windows.split(",")):
        start = time.perf_counter()
        segments, _ = model.transcribe(
            samples, window_seconds=window, margin_seconds=min(10.0, window / 4), decoder=args.decoder
        )
        hypothesis = " ".join(s.text for s in segments)
        elapsed = time.perf_counter() - start
        wer = jiwer.wer(normalise(reference), normalise(hypothesis))
        row = {
            "window_seconds": window,
            "wer": round(wer, 4),
            "x_real_time": round(duration / elapsed, 1),
            "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"minutes": args.minutes, "decoder": args.decoder, "results": results}))


if __name__ == "__main__":
    main()
