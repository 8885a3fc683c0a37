#!/usr/bin/env python3
"""Real acted English speech from *Beneath a Steel Sky* (Debian package `beneath-a-steel-sky`, the CD talkie).

Steps, each skipped when its marker file exists in the output folder:
  1. download  `apt-get download beneath-a-steel-sky` (no install) into OUT/pkg        (.done-download)
  2. extract   sky.dnr + sky.dsk out of the .deb into OUT/pkg                           (.done-extract)
  3. audio     every voiced line (text sections 0-7 but 4) and the untexted narration:
               unpack, 8-bit 11,025 Hz PCM -> 16 kHz mono 16-bit FLAC                     (.done-audio)
  4. manifests train.jsonl, dev.jsonl, test.jsonl, unlabelled.jsonl (all written, or none)

Text section 4 is held out for outside measurement: its clips are never decoded and never reach a manifest.
Speakers are not stored, so dev and test are whole sections (--dev-section, --test-section). See README.md.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

import debpkg  # noqa: E402
import sky  # noqa: E402

PACKAGE = "beneath-a-steel-sky"
DATA_MEMBERS = ("sky.dnr", "sky.dsk")
DATA_FOLDER = "usr/share/scummvm/beneath-a-steel-sky"
HELD_OUT_SECTION = 4  # never trained, tuned or evaluated on: kept for outside measurement
SECTIONS = tuple(s for s in range(len(sky.SECTION_BASES)) if s != HELD_OUT_SECTION)
DEV_SECTION = 0  # 170 clips
TEST_SECTION = 1  # 338 clips
REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_TREE = REPOSITORY.parent / "shared" / "data" / "bass-text-tree.json"
RecipeError = debpkg.RecipeError


class HeldOutError(RecipeError):
    """A clip of the held-out text section was about to be written: a bug, never a data problem."""


def step_data(out: Path, deb: Path | None) -> Path:
    """The folder holding sky.dnr and sky.dsk (downloaded and unpacked unless already done)."""
    if deb is None:
        deb = debpkg.download(PACKAGE, out / "pkg", out / ".done-download")
    elif not deb.is_file():
        raise RecipeError(f"{deb}: no such package file")
    root = debpkg.extract(deb, out / "pkg" / "root", out / ".done-extract")
    folder = root / DATA_FOLDER
    for name in DATA_MEMBERS:
        if not (folder / name).is_file():
            raise RecipeError(f"{deb}: {name} is not in it (not the {PACKAGE} package?)")
    return folder


def read_data(folder: Path) -> tuple[dict[int, sky.Record], bytes]:
    paths = [folder / name for name in DATA_MEMBERS]
    for path in paths:
        if not path.is_file():
            raise RecipeError(f"{path}: not found (--data-dir needs sky.dnr and sky.dsk)")
    try:
        records = sky.read_dnr(paths[0].read_bytes())
    except sky.SkyFormatError as e:
        raise RecipeError(f"{paths[0]}: {e}") from None
    return records, paths[1].read_bytes()


def split_of(section: int, dev: int, test: int) -> str:
    if section == HELD_OUT_SECTION:
        raise HeldOutError(f"text section {HELD_OUT_SECTION} is held out: it is never in a manifest")
    return "test" if section == test else "dev" if section == dev else "train"


def plan(records: dict[int, sky.Record], dsk: bytes, tree: sky.TextTree, dev: int, test: int) -> list[dict]:
    """One row per speech file to use: labelled lines of the allowed sections, then the untexted narration."""
    rows = []
    for section in SECTIONS:
        text_file = records.get(sky.TEXT_BASE + section)
        if text_file is None:
            raise RecipeError(
                f"sky.dnr: no English text file for section {section} (file {sky.TEXT_BASE + section})"
            )
        try:
            messages = sky.read_text_section(sky.read_file(dsk, text_file), tree)
        except sky.SkyFormatError as e:
            raise RecipeError(f"sky.dsk: text section {section}: {e}") from None
        for line, message in enumerate(messages):
            number = sky.speech_file(section, line)
            if number not in records:
                continue
            text = debpkg.normalise(message)
            if text is None:
                continue
            split = split_of(section, dev, test)
            rows.append(
                {
                    "file": number,
                    "text": text,
                    "raw": message,
                    "section": section,
                    "text_id": section << 12 | line,
                    "split": split,
                }
            )
    for number in sky.NARRATION:
        if number in records:
            rows.append(
                {"file": number, "text": None, "section": None, "text_id": None, "split": "unlabelled"}
            )
    return rows


def step_audio(
    out: Path, records: dict[int, sky.Record], dsk: bytes, rows: list[dict], jobs: int
) -> list[dict]:
    """Each row's clip as FLAC; the rows with their audio and duration. Untexted narration follows the
    unlabelled-voices rules (under 0.5 s dropped, over 30 s cut into equal pieces), so one row may become
    several or none."""
    ffmpeg = debpkg.ffmpeg_exe()
    pcm_in = ("-f", "u8", "-ar", str(sky.SAMPLE_RATE), "-ac", "1")

    def one(row: dict) -> list[dict]:
        target = out / "audio" / row["split"] / f"{row['file']}.flac"
        made = debpkg.done(target)
        if made is None:
            try:
                pcm = sky.speech_pcm(sky.read_file(dsk, records[row["file"]]))
            except sky.SkyFormatError as e:
                raise RecipeError(f"sky.dsk: speech file {row['file']}: {e}") from None
            if not pcm:
                raise RecipeError(f"sky.dsk: speech file {row['file']} holds no samples")
            name = f"speech file {row['file']}"
            if row["text"] is not None:
                debpkg.to_flac(ffmpeg, pcm, target, name, pcm_in)
                made = [target]
            else:
                whole = target.with_name(f".{target.stem}.whole.flac")
                debpkg.to_flac(ffmpeg, pcm, whole, name, pcm_in)
                made = debpkg.finish(ffmpeg, whole, target, name)
        return [
            {
                **row,
                "audio": path.relative_to(out).as_posix(),
                "clip": path.stem,
                "duration": debpkg.duration(path),
            }
            for path in made
        ]

    result = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for done, made in enumerate(pool.map(one, rows), start=1):
            result += made
            if done % 500 == 0:
                print(f"audio: {done}/{len(rows)} clips", flush=True)
    return result


def manifests(out: Path, rows: list[dict]) -> dict[Path, list[dict]]:
    """The four manifests' rows; refuses (HeldOutError) any row of the held-out section, whatever its split."""
    fields = ("audio", "text", "duration", "clip", "source", "section", "text_id")
    result: dict[Path, list[dict]] = {}
    for split in ("train", "dev", "test", "unlabelled"):
        chosen = []
        for row in rows:
            if row["section"] == HELD_OUT_SECTION or (row["text_id"] or 0) >> 12 == HELD_OUT_SECTION:
                raise HeldOutError(
                    f"speech file {row['file']} is in held-out text section {HELD_OUT_SECTION}"
                )
            if row["split"] == split:
                full = {**row, "source": f"{PACKAGE}:sky.dsk#{row['file']}"}
                chosen.append({k: full[k] for k in fields})
        result[out / f"{split}.jsonl"] = chosen
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/beneath-a-steel-sky"))
    ap.add_argument("--deb", type=Path, help="an already downloaded .deb (skips apt-get download)")
    ap.add_argument(
        "--data-dir", type=Path, help="a folder with sky.dnr and sky.dsk (skips download and extract)"
    )
    ap.add_argument("--text-tree", type=Path, default=DEFAULT_TREE, help="the text's Huffman tree (JSON)")
    ap.add_argument("--dev-section", type=int, default=DEV_SECTION, choices=SECTIONS)
    ap.add_argument("--test-section", type=int, default=TEST_SECTION, choices=SECTIONS)
    ap.add_argument("--jobs", type=int, default=2, help="parallel unpack + ffmpeg workers")
    args = ap.parse_args(argv)
    if args.dev_section == args.test_section:
        ap.error("--dev-section and --test-section must differ")
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        try:
            tree = sky.load_tree(args.text_tree)
        except sky.SkyFormatError as e:
            raise RecipeError(str(e)) from None
        folder = args.data_dir or step_data(out, args.deb)
        records, dsk = read_data(folder)
        rows = plan(records, dsk, tree, args.dev_section, args.test_section)
        if not any(row["text"] for row in rows):
            raise RecipeError(f"{folder}: no voiced lines with text found")
        rows = step_audio(out, records, dsk, rows, args.jobs)
        (out / ".done-audio").touch()
        written = manifests(out, rows)
        debpkg.write_manifests(written)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path, chosen in written.items():
        print(f"{path.stem}: {len(chosen)} clips, {sum(r['duration'] for r in chosen) / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
