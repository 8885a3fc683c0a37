#!/usr/bin/env python3
"""Pass a manifest's clips through the game's audio channel: 11,025 Hz mono MP3 at 16 kbit/s, back to 16 kHz FLAC.

    python recipes/amazon-queen/codec.py data/synthetic-en/train.jsonl data/synthetic-en-codec --jobs 2

The game's voice clips are narrowband (nothing above 5.5 kHz) with MP3 artefacts; wideband synthetic speech
passed through the same channel teaches a model that sound. Writes OUT/audio/<name>.flac for every clip and
OUT/<manifest name> with the same rows (audio made absolute; ``channel`` set). ``--share 0.5`` converts a seeded
half of the rows, and ``--rest FILE`` writes the other rows (audio made absolute) to FILE, so that the two
manifests together hold every utterance once, wideband or through the channel. Clips already converted are kept,
so a rerun resumes; the manifests are written last, through temporary files, and not at all when a clip fails (one
line naming it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prepare import RecipeError, duration, ffmpeg_exe  # noqa: E402

from samba_cli.atomic import write_atomically  # noqa: E402

CHANNEL = "mp3-11025hz-16kbps"


def through_channel(ffmpeg: str, source: Path, target: Path, bitrate: str = "16k") -> None:
    """source (any audio) -> 11,025 Hz mono MP3 at ``bitrate`` -> target (16 kHz mono 16-bit FLAC), atomically."""
    encode = [ffmpeg, "-nostdin", "-v", "error", "-i", str(source), "-ac", "1", "-ar", "11025"]
    encode += ["-c:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3", "pipe:1"]
    tmp = target.with_name(f".{target.name}.part")
    decode = [ffmpeg, "-nostdin", "-v", "error", "-f", "mp3", "-i", "pipe:0", "-ac", "1", "-ar", "16000"]
    decode += ["-sample_fmt", "s16", "-f", "flac", "-y", str(tmp)]
    mp3 = subprocess.run(encode, capture_output=True)
    if mp3.returncode != 0 or not mp3.stdout:
        cause = mp3.stderr.decode(errors="replace").strip().splitlines()
        raise RecipeError(f"{source}: ffmpeg cannot encode it: {cause[-1] if cause else 'no output'}")
    flac = subprocess.run(decode, input=mp3.stdout, capture_output=True)
    if flac.returncode != 0:
        tmp.unlink(missing_ok=True)
        cause = flac.stderr.decode(errors="replace").strip().splitlines()
        raise RecipeError(f"{source}: ffmpeg cannot decode its MP3: {cause[-1] if cause else 'no output'}")
    os.replace(tmp, target)


def convert(manifest: Path, out: Path, share: float, seed: int, jobs: int) -> tuple[list[dict], list[dict]]:
    """(the converted rows, the rows left as they are), each in manifest order of the seeded draw."""
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["audio"] = str((manifest.parent / row["audio"]).resolve())
            rows.append(row)
    chosen = list(range(len(rows)))
    if share < 1.0:  # the same draw as random.sample(rows, k): sample picks by index
        chosen = random.Random(seed).sample(chosen, round(share * len(rows)))
    picked = set(chosen)
    rest = [row for index, row in enumerate(rows) if index not in picked]
    rows = [rows[index] for index in chosen]
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    ffmpeg = ffmpeg_exe()

    def one(index_row: tuple[int, dict]) -> dict:
        index, row = index_row
        target = audio / f"{index:06d}-{Path(row['audio']).stem}.flac"
        if not target.exists():
            through_channel(ffmpeg, Path(row["audio"]), target)
        return {**row, "audio": str(target.resolve()), "duration": duration(target), "channel": CHANNEL}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, enumerate(rows))), rest


def write_manifest(target: Path, rows: list[dict]) -> None:
    write_atomically(target, lambda stream: stream.writelines(json.dumps(r) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path, help="JSONL manifest (audio, text, ...)")
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--share", type=float, default=1.0, help="seeded share of the rows to convert")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="parallel ffmpeg pipelines")
    ap.add_argument("--rest", type=Path, help="manifest of the rows left unconverted (with --share under 1)")
    args = ap.parse_args(argv)
    if not args.manifest.is_file():
        print(f"error: {args.manifest}: no such manifest", file=sys.stderr)
        return 2
    if not 0.0 < args.share <= 1.0:
        print(f"error: --share must be in (0, 1], got {args.share}", file=sys.stderr)
        return 2
    try:
        rows, rest = convert(args.manifest, args.out, args.share, args.seed, args.jobs)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    target = args.out / args.manifest.name
    write_manifest(target, rows)
    print(f"{target}: {len(rows)} clips, {sum(r['duration'] for r in rows) / 3600:.2f} h")
    if args.rest is not None:
        write_manifest(args.rest, rest)
        print(f"{args.rest}: {len(rest)} clips left wideband")
    return 0


if __name__ == "__main__":
    sys.exit(main())
