"""WER of `transcribe` on clips whose leading silence is cut to 0: does speech from the first sample keep its
first word?

Each clip of a JSONL manifest (audio, text) is read, everything before its first sample above ``--threshold``
of full scale is cut off, and the rest is transcribed by the library's ``transcribe`` (the pipeline `samba
transcribe` runs: windows, VAD, segments), with the default decoding unless options say otherwise. The same is
done on the untouched clips. WER after the evaluation normaliser, and the share of clips whose first reference
word is the first hypothesis word, go to stdout as one JSON object.

    python benchmarks/first_word.py data/synthetic-en/test.jsonl --count 400 --label after

Compare two versions of the code by running it with ``PYTHONPATH=<their src>``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _first_words_equal(reference: str, hypothesis: str) -> bool:
    ref, hyp = reference.split(), hypothesis.split()
    return bool(ref) and bool(hyp) and ref[0] == hyp[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--count", type=int, default=400, help="first N clips of the manifest")
    parser.add_argument("--threshold", type=float, default=0.01, help="leading samples below this are cut")
    parser.add_argument("--label", default="", help="a name for this run in the output")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import jiwer

    import samba_cli
    from samba_cli.audio import load_audio
    from samba_cli.train.evaluate import normalize

    model = samba_cli.load_model(device="cpu", threads=args.threads)
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()][: args.count]
    result: dict[str, object] = {"label": args.label, "manifest": str(args.manifest), "clips": len(rows)}
    for name in ("untouched", "trimmed"):
        references, hypotheses, cut_seconds = [], [], []
        start = time.monotonic()
        for row in rows:
            samples = load_audio(args.manifest.parent / row["audio"])
            if name == "trimmed":
                loud = np.flatnonzero(np.abs(samples) > args.threshold)
                first = int(loud[0]) if loud.size else 0
                cut_seconds.append(first / 16000)
                samples = samples[first:]
            segments, _ = model.transcribe(samples)
            references.append(normalize(row["text"]))
            hypotheses.append(normalize(" ".join(s.text for s in segments)))
        result[name] = {
            "wer": jiwer.wer(references, hypotheses),
            "first_word_kept": float(
                np.mean([_first_words_equal(r, h) for r, h in zip(references, hypotheses, strict=True)])
            ),
            "seconds": round(time.monotonic() - start, 1),
        }
        if cut_seconds:
            result[name]["mean_silence_cut_s"] = round(float(np.mean(cut_seconds)), 3)
        print(json.dumps({name: result[name]}), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
