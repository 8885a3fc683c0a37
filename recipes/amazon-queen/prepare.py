#!/usr/bin/env python3
"""Real acted English speech from *Flight of the Amazon Queen* (Debian package `flight-of-the-amazon-queen`).

Steps, each skipped when its marker file exists in the output folder:
  1. download  `apt-get download flight-of-the-amazon-queen` (no install) into OUT/pkg   (.done-download)
  2. extract   queen.1c out of the .deb                                              (.done-extract)
  3. audio     every voiced line's MP3 clip -> 16 kHz mono 16-bit FLAC              (.done-audio)
  4. manifests train.jsonl, dev.jsonl, test.jsonl (all written, or none)

Splits are by character: the `test` characters and the `dev` characters never occur in `train`, nor do the cut
scenes that belong to their conversations. See README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import queen  # noqa: E402

PACKAGE = "flight-of-the-amazon-queen"
DATA_MEMBER = "./usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
SAMPLE_RATE = 16000
TEST_SPEAKERS = ("SPARKY", "WITCH", "LOU", "NAOMI")  # 523 clips: held out, never trained or tuned on
DEV_SPEAKERS = ("HENRY", "KLUNK", "LARIS")  # 259 clips: for choices (checkpoints, decoding settings)


class RecipeError(Exception):
    """A one-line, user-facing failure of the recipe."""


def ffmpeg_exe() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure means the same thing here
        raise RecipeError(f"no ffmpeg found (install ffmpeg or imageio-ffmpeg): {e}") from None


def step_download(out: Path, deb: Path | None) -> Path:
    pkg = out / "pkg"
    if deb is not None:
        if not deb.is_file():
            raise RecipeError(f"{deb}: no such package file")
        return deb
    found = sorted(pkg.glob(f"{PACKAGE}_*.deb"))
    if found and (out / ".done-download").exists():
        return found[-1]
    if shutil.which("apt-get") is None:
        raise RecipeError(f"apt-get not found: download {PACKAGE}'s .deb by hand and pass --deb")
    pkg.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(["apt-get", "download", PACKAGE], cwd=pkg, capture_output=True, text=True)
    found = sorted(pkg.glob(f"{PACKAGE}_*.deb"))
    if run.returncode != 0 or not found:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise RecipeError(f"apt-get download {PACKAGE} failed: {last}")
    (out / ".done-download").touch()
    return found[-1]


def step_extract(out: Path, deb: Path) -> Path:
    target = out / "pkg" / "queen.1c"
    if target.exists() and (out / ".done-extract").exists():
        return target
    if shutil.which("dpkg-deb") is None:
        raise RecipeError("dpkg-deb not found: it unpacks the .deb (Debian's dpkg package)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        run = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, text=True)
        member = Path(tmp) / DATA_MEMBER
        if run.returncode != 0 or not member.is_file():
            cause = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "queen.1c is not in it"
            raise RecipeError(f"{deb}: cannot unpack the game data: {cause}")
        os.replace(member, target)
    (out / ".done-extract").touch()
    return target


def split_of(line: queen.Line, held_out_scenes: dict[str, str]) -> str:
    if line.speaker in TEST_SPEAKERS:
        return "test"
    if line.speaker in DEV_SPEAKERS:
        return "dev"
    if line.speaker.startswith("CUT:"):
        return held_out_scenes.get(line.source, "train")
    return "train"


def plan(data: bytes, toc: dict[str, queen.Entry]) -> list[dict]:
    """One record per voiced line with speakable text: clip, text, speaker, split."""
    held_out_scenes: dict[str, str] = {}
    for name in toc:
        if name.endswith(".CUT"):
            talk = queen.cut_talk_file(name, queen.entry_bytes(data, toc[name]))
            partner = queen.dog_partner(talk) if talk else ""
            if partner in TEST_SPEAKERS:
                held_out_scenes[name] = "excluded"  # the held-out character may speak in it: use nowhere
            elif partner in DEV_SPEAKERS:
                held_out_scenes[name] = "excluded"
    records = []
    for line in queen.read_lines(data, toc):
        text = queen.normalise(line.text)
        split = split_of(line, held_out_scenes)
        if text is None or split == "excluded":
            continue
        records.append(
            {"clip": line.clip, "text": text, "speaker": line.speaker, "source": line.source, "split": split}
        )
    return records


def decode_clip(ffmpeg: str, mp3: bytes, target: Path) -> float:
    """One MP3 clip -> 16 kHz mono FLAC at ``target`` (written to a .part file, then renamed); its duration."""
    part = target.with_name(target.name + ".part")
    run = subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "mp3",
            "-i",
            "pipe:0",
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-sample_fmt",
            "s16",
            "-f",
            "flac",
            str(part),
        ],
        input=mp3,
        capture_output=True,
    )
    if run.returncode != 0 or not part.exists():
        part.unlink(missing_ok=True)
        cause = run.stderr.decode(errors="replace").strip().splitlines()
        raise RecipeError(
            f"clip {target.stem}: ffmpeg cannot decode it: {cause[-1] if cause else 'no output'}"
        )
    os.replace(part, target)
    return duration(target)


def duration(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return round(info.frames / info.samplerate, 3)


def step_audio(out: Path, data: bytes, toc: dict[str, queen.Entry], records: list[dict], jobs: int) -> None:
    ffmpeg = ffmpeg_exe()

    def one(record: dict) -> None:
        rel = f"audio/{record['split']}/{record['clip']}.flac"
        target = out / rel
        record["audio"] = rel
        if target.exists():
            try:
                record["duration"] = duration(target)
                return
            except RuntimeError:
                target.unlink()
        entry = toc.get(f"{record['clip']}.SB")
        if entry is None or entry.size == 0:
            raise RecipeError(f"clip {record['clip']}: missing from the data file")
        target.parent.mkdir(parents=True, exist_ok=True)
        record["duration"] = decode_clip(ffmpeg, queen.entry_bytes(data, entry), target)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for done, _ in enumerate(pool.map(one, records), start=1):
            if done % 500 == 0:
                print(f"audio: {done}/{len(records)} clips", flush=True)


def write_manifests(out: Path, records: list[dict]) -> dict[str, Counter]:
    """train/dev/test.jsonl, all staged first and then renamed, so a failure leaves no partial manifest."""
    fields = ("audio", "text", "speaker", "duration", "clip", "source")
    staged = []
    stats: dict[str, Counter] = {}
    for split in ("train", "dev", "test"):
        rows = [r for r in records if r["split"] == split]
        stats[split] = Counter(clips=len(rows), seconds=round(sum(r["duration"] for r in rows)))
        tmp = out / f".{split}.jsonl.part"
        with tmp.open("w") as f:
            for r in rows:
                f.write(json.dumps({k: r[k] for k in fields}) + "\n")
        staged.append((tmp, out / f"{split}.jsonl"))
    for tmp, final in staged:
        os.replace(tmp, final)
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/amazon-queen"))
    ap.add_argument("--deb", type=Path, help="an already downloaded .deb (skips apt-get download)")
    ap.add_argument(
        "--data-file", type=Path, help="an already extracted queen.1c (skips download and extract)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="parallel ffmpeg decoders")
    args = ap.parse_args(argv)
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = args.data_file or step_extract(out, step_download(out, args.deb))
        data, toc = queen.read_file(path)
        records = plan(data, toc)
        if not records:
            raise RecipeError(f"{path}: no voiced lines with text found")
        step_audio(out, data, toc, records, args.jobs)
        (out / ".done-audio").touch()
        stats = write_manifests(out, records)
    except (RecipeError, queen.QueenFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split, s in stats.items():
        print(f"{split}: {s['clips']} clips, {s['seconds'] / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
