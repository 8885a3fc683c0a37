"""Pack, here, what benchmarks/gpu/pipeline.py needs on a GPU machine that has no network: short real clips and
the converted Whisper tiny.en, small enough to travel (a run carries at most 64 MiB, the repository included).

    python benchmarks/gpu/pack.py --clips /work/data/amazon-queen/dev.jsonl --count 200 \\
        --whisper /work/data/whisper-tiny-en-torch --out .gpu-data

Writes ``OUT/clips/NNNN.ogg`` (the first ``--count`` clips of ``--min-seconds``-``--max-seconds`` of the manifest,
16 kHz Ogg Vorbis: about a tenth of FLAC's size, and both systems decode the same samples), ``OUT/clips/clips.jsonl``
(``audio``, ``text``, ``source``: the manifest line it came from), and ``OUT/whisper-tiny.en/`` (the configs,
tokenizer and the int8 weights of benchmarks/whisper_torch/convert.py, not the float16 checkpoint); with
``--voices MANIFEST`` also ``OUT/voices/`` (its utterances up to ``--voice-minutes``, the same way: the long
recording is built from them, else from samples/heldout-voices.flac). Prints sizes.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
from pathlib import Path

import soundfile as sf

from benchmarks.whisper_torch.convert import PACKED
from samba_cli.atomic import write_atomically

TOKENIZER = "tokenizer.json"
WHISPER_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    TOKENIZER,
    PACKED,
)
VORBIS_QUALITY = 0.5  # soundfile's compression_level for Vorbis (0: best quality, 1: smallest)


def pack_clips(
    manifest: Path, count: int | None, low: float, high: float, folder: Path, minutes: float = float("inf")
) -> float:
    """Write the first ``count`` (all: None) clips of ``low``-``high`` seconds, at most ``minutes`` in all, and
    their manifest into ``folder``; returns their seconds."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    chosen, total = [], 0.0
    for row in rows:
        if low <= float(row["duration"]) <= high and total + float(row["duration"]) <= minutes * 60:
            chosen.append(row)
            total += float(row["duration"])
    chosen = chosen[:count]
    if count is not None and len(chosen) < count:
        raise SystemExit(
            f"error: {manifest}: only {len(chosen)} clips of {low:g}-{high:g} s, {count} asked for"
        )
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lines, seconds = [], 0.0
    for i, row in enumerate(chosen):
        audio, rate = sf.read(manifest.parent / row["audio"], dtype="float32")
        if rate != 16000:
            raise SystemExit(f"error: {manifest.parent / row['audio']}: {rate} Hz, expected 16000")
        name = f"{i:04d}.ogg"
        sf.write(folder / name, audio, rate, format="OGG", subtype="VORBIS", compression_level=VORBIS_QUALITY)
        seconds += len(audio) / rate
        lines.append(json.dumps({"audio": name, "text": row["text"], "source": row["audio"]}))
    write_atomically(folder / "clips.jsonl", lambda f: f.write("\n".join(lines) + "\n"))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clips", type=Path, required=True, help="manifest of real clips (never a held-out set)"
    )
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument(
        "--whisper", type=Path, required=True, help="folder of benchmarks/whisper_torch/convert.py"
    )
    parser.add_argument(
        "--voices",
        type=Path,
        help="manifest of synthetic utterances by held-out voices, for the long recording",
    )
    parser.add_argument(
        "--voice-minutes",
        type=float,
        default=6.0,
        help="at most this much of --voices (2 MiB per 7 minutes; the long recording repeats it)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    missing = [name for name in WHISPER_FILES if not (args.whisper / name).exists()]
    if missing:
        raise SystemExit(
            f"error: {args.whisper}: no {', '.join(missing)} (python -m benchmarks.whisper_torch.convert)"
        )
    seconds = pack_clips(args.clips, args.count, args.min_seconds, args.max_seconds, args.out / "clips")
    if args.voices:
        voices = pack_clips(args.voices, None, 0.0, float("inf"), args.out / "voices", args.voice_minutes)
        voice_bytes = sum(p.stat().st_size for p in (args.out / "voices").iterdir())
        print(f"voices: {voices / 60:.1f} min, {voice_bytes / 2**20:.2f} MiB")
    target = args.out / "whisper-tiny.en"
    target.mkdir(parents=True, exist_ok=True)
    for name in WHISPER_FILES:
        if name == TOKENIZER:  # 2.1 MB of JSON travels as 0.4 MB of xz (the loader reads either)
            packed = lzma.compress((args.whisper / name).read_bytes(), preset=9)
            write_atomically(target / f"{name}.xz", lambda f, data=packed: f.write(data), binary=True)
            (target / name).unlink(missing_ok=True)
        else:
            shutil.copyfile(args.whisper / name, target / name)
    clip_bytes = sum(p.stat().st_size for p in (args.out / "clips").iterdir())
    whisper_bytes = sum(p.stat().st_size for p in target.iterdir())
    print(
        f"{args.count} clips, {seconds:.1f} s: {clip_bytes / 2**20:.2f} MiB; whisper: {whisper_bytes / 2**20:.2f} MiB"
    )


if __name__ == "__main__":
    main()
