"""Helpers the real-voice recipes share: fetch a Debian package without installing it, unpack it, convert a clip
to the project's audio format, write manifests all or none.

The user-facing failure type, the ffmpeg lookup and the duration reader are the amazon-queen recipe's (imported,
not copied), so every recipe reports a bad input the same way: one line naming the file and the cause.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from samba_cli.atomic import write_all_atomically

RECIPES = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
MIN_SECONDS = 0.5  # shorter untexted clips are dropped
MAX_SECONDS = 30.0  # longer untexted clips are cut into pieces


def load_recipe_module(recipe: str, name: str):
    """``recipes/<recipe>/<name>.py`` as a module named ``<recipe>_<name>`` (recipes all have a prepare.py)."""
    folder = RECIPES / recipe
    unique = f"{recipe.replace('-', '_')}_{name}"
    if unique in sys.modules:
        return sys.modules[unique]
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(unique, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))


_queen_prepare = load_recipe_module("amazon-queen", "prepare")
RecipeError = _queen_prepare.RecipeError
ffmpeg_exe = _queen_prepare.ffmpeg_exe


def duration(path: Path) -> float:
    """Seconds of a FLAC file: the amazon-queen recipe's reader, but samples counted when the header does not
    know the length (ffmpeg writes an unknown length for an empty clip; soundfile then reports 2**63 - 1)."""
    seconds = _queen_prepare.duration(path)
    if seconds < 1e6:
        return seconds
    command = [
        ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-f",
        "s16le",
        "-ac",
        "1",
        "-",
    ]
    run = subprocess.run(command, capture_output=True)
    if run.returncode != 0:
        raise RecipeError(f"{path}: cannot read back the converted clip")
    return round(len(run.stdout) / 2 / SAMPLE_RATE, 3)


normalise = load_recipe_module("amazon-queen", "queen").normalise


def download(package: str, folder: Path, marker: Path) -> Path:
    """``apt-get download PACKAGE`` into ``folder`` (nothing installed); the .deb. Skipped when ``marker`` exists."""
    found = sorted(folder.glob(f"{package}_*.deb"))
    if found and marker.exists():
        return found[-1]
    if shutil.which("apt-get") is None:
        raise RecipeError(f"apt-get not found: download {package}'s .deb by hand and pass it with --deb")
    folder.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True)
    found = sorted(folder.glob(f"{package}_*.deb"))
    if run.returncode != 0 or not found:
        errors = [x for x in run.stderr.strip().splitlines() if not x.startswith("W:")] or ["no output"]
        raise RecipeError(f"apt-get download {package} failed: {errors[-1]}")
    marker.touch()
    return found[-1]


def extract(deb: Path, target: Path, marker: Path) -> Path:
    """``dpkg-deb -x DEB`` into ``target`` (through a temporary folder, so a failure leaves nothing half unpacked);
    skipped when ``marker`` names this same .deb (its file name and size)."""
    if not deb.is_file():
        raise RecipeError(f"{deb}: no such package file")
    stamp = f"{deb.name} {deb.stat().st_size}\n"
    if target.is_dir() and marker.exists() and marker.read_text() == stamp:
        return target
    if shutil.which("dpkg-deb") is None:
        raise RecipeError("dpkg-deb not found: it unpacks the .deb (Debian's dpkg package)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        run = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, text=True)
        if run.returncode != 0:
            lines = run.stderr.strip().splitlines()
            raise RecipeError(
                f"{deb}: not a readable Debian package: {lines[-1] if lines else 'dpkg-deb failed'}"
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        os.mkdir(tmp)  # TemporaryDirectory removes its folder on exit
    marker.write_text(stamp)
    return target


def to_flac(
    ffmpeg: str, source: Path | bytes, target: Path, name: str, input_format: Sequence[str] = (), cut=None
) -> None:
    """One clip (a file, or bytes fed on stdin in ``input_format``) -> 16 kHz mono 16-bit FLAC at ``target``,
    through a .part file renamed at the end. ``cut`` = (start, seconds) keeps that stretch. ``name`` names the
    clip in the one-line error."""
    part = target.with_name(target.name + ".part")
    command = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", *input_format]
    command += ["-i", "pipe:0" if isinstance(source, bytes) else str(source)]
    if cut is not None:
        command += ["-ss", f"{cut[0]:.3f}", "-t", f"{cut[1]:.3f}"]
    command += ["-ac", "1", "-ar", str(SAMPLE_RATE), "-sample_fmt", "s16", "-f", "flac", str(part)]
    target.parent.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(command, input=source if isinstance(source, bytes) else None, capture_output=True)
    if run.returncode != 0 or not part.exists():
        part.unlink(missing_ok=True)
        cause = run.stderr.decode(errors="replace").strip().splitlines()
        raise RecipeError(f"{name}: ffmpeg cannot decode it: {cause[-1] if cause else 'no output'}")
    os.replace(part, target)


def to_flac_batch(ffmpeg: str, items: Sequence[tuple[Path, Path, str, Sequence[str]]]) -> None:
    """Several clips (source file, target, name, input format) -> 16 kHz mono FLAC in one ffmpeg run (starting
    ffmpeg costs more than decoding a short clip); when that run fails, clip by clip, so that the one-line error
    names the clip that cannot be decoded."""
    if not items:
        return
    command = [ffmpeg, "-nostdin", "-loglevel", "error", "-y"]
    for source, _, _, input_format in items:
        command += [*input_format, "-i", str(source)]
    parts = []
    for index, (_, target, _, _) in enumerate(items):
        target.parent.mkdir(parents=True, exist_ok=True)
        parts.append(target.with_name(target.name + ".part"))
        command += ["-map", f"{index}:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-sample_fmt", "s16"]
        command += ["-f", "flac", str(parts[-1])]
    run = subprocess.run(command, capture_output=True)
    if run.returncode == 0 and all(part.exists() for part in parts):
        for part, (_, target, _, _) in zip(parts, items, strict=True):
            os.replace(part, target)
        return
    for part in parts:
        part.unlink(missing_ok=True)
    for source, target, name, input_format in items:
        to_flac(ffmpeg, source, target, name, input_format)


def finish(ffmpeg: str, whole: Path, target: Path, name: str) -> list[Path]:
    """A converted clip (``whole``) as its final file(s): ``target``, or equal pieces of at most 30 s named
    ``<target>-partNN.flac`` when longer, or none when under 0.5 s (for clips without text: a cut needs no
    transcript)."""
    seconds = duration(whole)
    if seconds < MIN_SECONDS:
        whole.unlink()
        return []
    if seconds <= MAX_SECONDS:
        whole.rename(target)
        return [target]
    count = math.ceil(seconds / MAX_SECONDS)
    step = seconds / count
    pieces = []
    for k in range(count):
        piece = target.with_name(f"{target.stem}-part{k:02d}.flac")
        to_flac(ffmpeg, whole, piece, f"{name} (piece {k})", (), cut=(k * step, step))
        pieces.append(piece)
    whole.unlink()
    return pieces


def done(target: Path) -> list[Path] | None:
    """The final file(s) of a clip converted by an earlier run, or None."""
    if target.exists():
        return [target]
    return sorted(target.parent.glob(f"{target.stem}-part*.flac")) or None


def write_manifests(manifests: dict[Path, list[dict]]) -> None:
    """Every manifest (JSON lines) written all or none."""

    def writer(rows: list[dict]):
        return lambda stream: stream.writelines(json.dumps(row) + "\n" for row in rows)

    write_all_atomically([(path, writer(rows)) for path, rows in manifests.items()])
