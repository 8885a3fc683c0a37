"""Many short files: decoding them one by one against sharing encoder and decoder batches across them.

Takes the first ``--count`` utterances of a JSONL manifest as separate inputs and transcribes them twice per
decoder: with ``Transcriber.transcribe`` file by file, and with ``Transcriber.transcribe_many`` (what
``samba transcribe`` does with a folder). Prints x real time for both (best of ``--repeats``), and checks that
both give the same text.

    python benchmarks/many_files.py samba-tiny-en data/synthetic-en/test.jsonl --count 48 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import soundfile as sf
import torch

from samba_cli.api import load_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="bundled name, model folder or Hub repo id")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--count", type=int, default=48, help="inputs (the manifest's first utterances)")
    parser.add_argument("--decoders", default="attention,ctc")
    parser.add_argument("--encoder-batch", type=float, default=None, help="seconds (default: auto)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--search-workers", type=int, default=1, help="CTC search processes (1: none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()][: args.count]
    clips = [sf.read(args.manifest.parent / row["audio"], dtype="float32")[0] for row in rows]
    audio = sum(len(clip) for clip in clips) / 16000
    model = load_model(args.model, device=args.device)
    options = {
        "vad": False,
        "encoder_batch_seconds": args.encoder_batch,
        "search_workers": args.search_workers,
    }
    print(
        f"{len(clips)} inputs, {audio:.0f} s of audio, {args.device}, {args.threads} thread(s), "
        f"{args.search_workers} search worker(s)"
    )
    for decoder in args.decoders.split(","):
        one_by_one, shared = float("inf"), float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            alone = [
                [s.text for s in model.transcribe(clip, decoder=decoder, **options)[0]] for clip in clips
            ]
            one_by_one = min(one_by_one, time.perf_counter() - start)
            start = time.perf_counter()
            events, _ = model.transcribe_many(clips, decoder=decoder, **options)
            together: list[list[str]] = [[] for _ in clips]
            for event in events:
                if event.segment is not None:
                    together[event.source].append(event.segment.text)
            shared = min(shared, time.perf_counter() - start)
        same = "same text" if alone == together else "TEXT DIFFERS"
        print(
            f"{decoder:9s} file by file {audio / one_by_one:6.1f}x   shared batches {audio / shared:6.1f}x   ({same})",
            flush=True,
        )


if __name__ == "__main__":
    main()
