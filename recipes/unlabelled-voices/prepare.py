#!/usr/bin/env python3
"""Real voices without transcripts, from Debian packages, for training losses that need no text (distillation).

Packages (see sources.py and README.md): hedgewars-data, warzone2100-data, the non-English Asterisk prompts
(asterisk-core-sounds-{es,fr,it,ru}-wav, asterisk-prompt-es-co, -fr-armelle, -it-menardi-wav),
fillets-ng-data-cs, fillets-ng-data-nl, klettres-data. The English Asterisk prompts are refused.

Steps per package, each skipped when its marker exists in OUT/pkg/<package>/:
  1. download  `apt-get download PACKAGE` (no install), or the .deb found in --debs DIR  (.done-download)
  2. extract   `dpkg-deb -x`                                                                (.done-extract)
  3. audio     every speech file -> 16 kHz mono 16-bit FLAC; clips under 0.5 s dropped, clips over 30 s cut
               into equal pieces of at most 30 s                                           (.done-audio)
Then the manifests, all written together or none: OUT/<package>.jsonl per package and OUT/unlabelled.jsonl
with every clip, each row {"audio", "text": null, "duration", "source", "language", "speaker", "clip"}.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

import debpkg  # noqa: E402
import sources  # noqa: E402

from samba_cli.atomic import write_atomically  # noqa: E402

RecipeError = debpkg.RecipeError


def refuse(package: str, path: str = "") -> None:
    try:
        sources.refuse_held_out(package, path)
    except ValueError as e:
        raise RecipeError(str(e)) from None


def find_deb(package: str, debs: Path | None, pkg: Path) -> Path:
    if debs is None:
        return debpkg.download(package, pkg, pkg / ".done-download")
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RecipeError(f"{debs}: no {package}_*.deb in it")
    return found[-1]


def members(source: sources.Source, root: Path) -> tuple[list[str], zipfile.ZipFile | None]:
    """The package's file list (or the list of its zip's members) and the open zip, if any."""
    if not source.zip_member:
        return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()], None
    path = root / source.zip_member
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise RecipeError(f"{source.package}: {source.zip_member} is not a readable zip ({e})") from None
    return archive.namelist(), archive


BATCH = 24  # clips per ffmpeg run


def convert_batch(ffmpeg: str, batch: list[tuple[Path, Path, str]]) -> list[list[Path]]:
    """(source file, target, name) -> each clip's final file(s), converting only what an earlier run left."""
    pending = [(s, t.with_name(f".{t.stem}.whole.flac"), n) for s, t, n in batch if debpkg.done(t) is None]
    fresh = [(s, w, n, ("-f", "gsm") if s.suffix == ".gsm" else ()) for s, w, n in pending if not w.exists()]
    debpkg.to_flac_batch(ffmpeg, fresh)  # a whole file left by a failed run is kept
    wholes = {w.name: (w, n) for _, w, n in pending}
    made = []
    for _, target, _ in batch:
        key = f".{target.stem}.whole.flac"
        if key in wholes:
            whole, name = wholes[key]
            made.append(debpkg.finish(ffmpeg, whole, target, name))
        else:
            made.append(debpkg.done(target))
    return made


def unzip(archive: zipfile.ZipFile, paths: list[str], folder: Path, package: str) -> Path:
    """The zip's speech members as files under ``folder`` (written through .part files)."""
    for path in paths:
        target = folder / path
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = archive.read(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise RecipeError(f"{package}: {path}: cannot read it from its zip ({e})") from None
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        part.replace(target)
    return folder


def step_package(out: Path, source: sources.Source, debs: Path | None, jobs: int) -> list[dict]:
    """One package's rows (audio relative to OUT)."""
    refuse(source.package)
    pkg = out / "pkg" / source.package
    pkg.mkdir(parents=True, exist_ok=True)
    deb = find_deb(source.package, debs, pkg)
    root = debpkg.extract(deb, pkg / "root", pkg / ".done-extract")
    copyright_file = root / "usr/share/doc" / source.package / "copyright"
    if copyright_file.is_file():
        text = copyright_file.read_text(encoding="utf-8", errors="replace")
        write_atomically(out / "licences" / f"{source.package}.copyright", lambda stream: stream.write(text))
    names, archive = members(source, root)
    paths = sources.speech_paths(source, names)
    if not paths:
        raise RecipeError(f"{deb}: no speech files where {source.package} keeps them ({source.globs[0]})")
    for path in paths:
        refuse(source.package, path)
    files = root
    if archive is not None:
        with archive:
            files = unzip(archive, paths, pkg / "zip", source.package)
    ffmpeg = debpkg.ffmpeg_exe()
    audio = out / "audio" / source.package
    items = []
    for path in paths:
        clip = re.sub(r"^usr/share/(games/)?", "", path).replace("/", "__").rsplit(".", 1)[0]
        items.append((files / path, audio / f"{clip}.flac", f"{source.package}: {path}"))
    batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        made = [pieces for batch in pool.map(lambda b: convert_batch(ffmpeg, b), batches) for pieces in batch]
    rows = []
    for path, pieces in zip(paths, made, strict=True):
        for piece in pieces:
            rows.append(
                {
                    "audio": piece.relative_to(out).as_posix(),
                    "text": None,
                    "duration": debpkg.duration(piece),
                    "source": f"{source.package}:{path}" + (f"@{source.zip_member}" if archive else ""),
                    "language": sources.language_of(source, path),
                    "speaker": sources.speaker_of(source, path),
                    "clip": piece.stem,
                }
            )
    (pkg / ".done-audio").touch()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/unlabelled-voices"))
    ap.add_argument(
        "--packages",
        nargs="+",
        default=list(sources.DEFAULT_PACKAGES),
        metavar="PACKAGE",
        help="default: every source but asterisk-core-sounds-es-wav (the voice of the held-out English prompts)",
    )
    ap.add_argument("--debs", type=Path, help="a folder of already downloaded .deb files (skips apt-get)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel ffmpeg conversions")
    args = ap.parse_args(argv)
    out: Path = args.out
    written: dict[Path, list[dict]] = {}
    try:
        for package in args.packages:
            refuse(package)
            if package not in sources.SOURCES:
                raise RecipeError(
                    f"{package}: not a package this recipe knows ({', '.join(sources.SOURCES)})"
                )
        (out / "licences").mkdir(parents=True, exist_ok=True)
        for package in args.packages:
            rows = step_package(out, sources.SOURCES[package], args.debs, args.jobs)
            written[out / f"{package}.jsonl"] = rows
            print(
                f"{package}: {len(rows)} clips, {sum(r['duration'] for r in rows) / 3600:.3f} h", flush=True
            )
        every = [row for rows in written.values() for row in rows]
        for row in every:
            refuse(row["source"].split(":", 1)[0], row["source"])
        written[out / "unlabelled.jsonl"] = every
        debpkg.write_manifests(written)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"unlabelled: {len(every)} clips, {sum(r['duration'] for r in every) / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
