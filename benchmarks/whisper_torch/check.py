"""Does the converted Whisper tiny.en give faster-whisper's text? On the CPU, on real clips.

    python -m benchmarks.whisper_torch.check --model /work/data/whisper-tiny-en-torch \\
        --manifest /work/data/amazon-queen/dev.jsonl --count 50 --peers-python /work/peers-venv/bin/python

faster-whisper (the CTranslate2 model itself, int8, beam 5, as benchmarks/peers.py runs it) against the PyTorch
model with the float weights and with the int8 weights a GPU run carries, each with beam 5 and greedy. WER after
Whisper's English normaliser (``samba eval``'s count), plus the words that differ from faster-whisper's text.
Prints one JSON object (also to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from benchmarks.whisper_torch.model import load_whisper, transcribe_clips
from samba_cli.atomic import write_atomically
from samba_cli.train.evaluate import count_errors, normalize

PEERS = Path(__file__).resolve().parents[1] / "peers.py"


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Percent word errors over all pairs (normalised as ``samba eval`` does)."""
    total = None
    for ref, hyp in zip(references, hypotheses, strict=True):
        counted = count_errors(normalize(ref), normalize(hyp))
        total = counted if total is None else total + counted
    return 100 * total.word_errors / max(1, total.words)


def faster_whisper(peers_python: str, paths: list[Path], threads: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "fw.json"
        command = [
            peers_python,
            str(PEERS),
            "child",
            "whisper-tiny.en",
            *map(str, paths),
            "--result",
            str(result),
        ]
        subprocess.run(command + ["--threads", str(threads)], check=True)
        decoded = json.loads(result.read_text())
    return [decoded[str(p)] for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="folder written by whisper_torch.convert")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--peers-python", default="/work/peers-venv/bin/python")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()][: args.count]
    paths = [args.manifest.parent / row["audio"] for row in rows]
    references = [row["text"] for row in rows]
    clips = [sf.read(path, dtype="float32")[0] for path in paths]
    start = time.perf_counter()
    texts = {"faster-whisper beam 5": faster_whisper(args.peers_python, paths, args.threads)}
    seconds = {"faster-whisper beam 5": time.perf_counter() - start}
    for weights in ("float", "int8"):
        peer = load_whisper(args.model, weights=weights)
        for beams in (5, 1):
            name = f"torch {weights} {'beam 5' if beams == 5 else 'greedy'}"
            start = time.perf_counter()
            texts[name] = transcribe_clips(peer, clips, batch_size=8, num_beams=beams)
            seconds[name] = time.perf_counter() - start
    base = texts["faster-whisper beam 5"]
    report = {
        "clips": len(clips),
        "manifest": str(args.manifest),
        "audio_seconds": round(sum(len(c) for c in clips) / 16000, 1),
        "systems": {
            name: {
                "wer": round(corpus_wer(references, hyps), 2),
                "words_differing_from_faster_whisper": round(corpus_wer(base, hyps), 2),
                "same_text_clips": sum(normalize(a) == normalize(b) for a, b in zip(base, hyps, strict=True)),
                "seconds": round(seconds[name], 1),
            }
            for name, hyps in texts.items()
        },
        "texts": {name: hyps for name, hyps in texts.items()},
    }
    text = json.dumps(report, indent=1)
    print(json.dumps(report["systems"], indent=1))
    if args.out:
        write_atomically(args.out, lambda f: f.write(text + "\n"))


if __name__ == "__main__":
    main()
