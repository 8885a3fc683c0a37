"""Batch planning: inputs (files, folders, glob patterns, standard input) -> jobs -> the output files of each.

:func:`discover` expands the inputs into :class:`Job` s; :func:`plan` maps every job to its output files, refuses
collisions and applies the overwrite policy before any work is done. Nothing here reads media or loads a model:
:mod:`samba_cli.batch` runs the plan, :mod:`samba_cli.distributed.storage` plans the cluster's runs with it.
"""

from __future__ import annotations

import enum
import glob
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from samba_cli.audio import STDIN

# Extensions (lower case, no dot) picked up in folders and glob matches unless the caller chooses others.
# fmt: off
AUDIO_EXTENSIONS = frozenset({
    "aac", "ac3", "aif", "aiff", "amr", "ape", "au", "caf", "flac", "m4a", "m4b", "mka", "mp2", "mp3", "oga", "ogg",
    "opus", "wav", "wave", "weba", "wma",
})
VIDEO_EXTENSIONS = frozenset({
    "3gp", "avi", "flv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "mts", "ogv", "ts", "webm", "wmv",
})
# fmt: on
DEFAULT_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
STDIN_STEM = "stdin"  # output name of the transcript of standard input
# formats whose transcripts of several inputs can go to stdout one after the other
CONCATENABLE = ("txt", "jsonl")
GLOB_CHARS = re.compile(r"[*?[]")


class PlanError(ValueError):
    """The inputs and output options cannot work together (two inputs would write the same file, ...)."""


class Existing(enum.Enum):
    """What to do when an output file already exists."""

    REFUSE = "refuse"  # fail that input, before any work, and say how to choose
    SKIP = "skip"  # write only the missing outputs; an input whose outputs all exist is skipped
    OVERWRITE = "overwrite"  # replace the existing files


class Status(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    source: str  # a media path as found, or "-" for standard input
    name: Path  # relative output path without the format extension, e.g. talks/day1/intro
    named: bool = False  # the file was named as an input (not found in a folder or by a glob pattern)

    def output(self, directory: Path, extension: str) -> Path:
        """The output file of this job for one format."""
        return directory / self.name.parent / f"{self.name.name}.{extension}"


@dataclass(frozen=True)
class Outcome:
    source: str  # the input, as given or found
    status: Status
    message: str = ""  # FAILED: one line naming the input and the cause; SKIPPED: why
    duration: float = 0.0  # seconds of audio transcribed
    outputs: tuple[Path, ...] = ()  # files written


@dataclass(frozen=True)
class Discovery:
    jobs: tuple[Job, ...]  # media files to transcribe, in input order, each source once
    failures: tuple[Outcome, ...]  # inputs that named nothing to transcribe (missing file, empty folder, ...)


@dataclass(frozen=True)
class Output:
    format: str  # writer name, also the file extension
    path: Path | None  # None: standard output
    # the file may replace one that is there when it is written (--overwrite); else a file that appeared since
    # the plan was made (another run writing the same folder) fails the input and is left as it is
    replace: bool = False


@dataclass(frozen=True)
class Task:
    job: Job
    outputs: tuple[Output, ...]  # what to write once the job is transcribed


@dataclass(frozen=True)
class Plan:
    tasks: tuple[Task, ...]  # jobs to transcribe, in order
    settled: tuple[Outcome, ...]  # inputs decided before any work: failed (missing, refused) or skipped


# -- discovery -----------------------------------------------------------------------------------------------------


def normalize_extensions(extensions: Sequence[str]) -> frozenset[str]:
    """``[".MP3", "wav"]`` -> ``{"mp3", "wav"}``."""
    return frozenset(ext.strip().lstrip(".").lower() for ext in extensions if ext.strip().lstrip("."))


def discover(
    inputs: Sequence[str], recursive: bool = False, extensions: frozenset[str] = DEFAULT_EXTENSIONS
) -> Discovery:
    """Expand the inputs into jobs.

    * ``-``: standard input, output name ``stdin``.
    * A file: taken whatever its extension; output name = its stem.
    * A folder: its media files (``extensions``), with ``recursive`` also those of its subfolders; output names
      mirror the tree relative to the folder. Hidden files and folders are left out.
    * A glob pattern (``*``, ``?``, ``[``; ``**`` spans folders) that names no existing path: the matching media
      files; output names mirror the tree relative to the pattern's fixed leading folders.

    The same file found twice is kept once. Missing paths and inputs that name no media are failures.
    """
    jobs: list[Job] = []
    failures: list[Outcome] = []
    seen: set[str] = set()

    def add(source: str, name: Path, named: bool = False) -> None:
        key = source if source == STDIN else os.path.realpath(source)
        if key not in seen:
            seen.add(key)
            jobs.append(Job(source, name, named))

    for item in inputs:
        path = Path(item)
        if item == STDIN:
            add(STDIN, Path(STDIN_STEM), named=True)
        elif path.is_dir():
            found = _media_in(path, recursive, extensions)
            if not found:
                where = (
                    "in this folder or its subfolders"
                    if recursive
                    else "in this folder (-r searches subfolders)"
                )
                failures.append(failure(item, f"{item}: no media files {where}{_extension_hint(extensions)}"))
            for file in found:
                add(str(file), _stem_path(file.relative_to(path)))
        elif path.exists():
            add(item, Path(path.stem), named=True)
        elif GLOB_CHARS.search(item):
            base = glob_base(item)
            found = [
                Path(match)
                for match in sorted(glob.glob(item, recursive=True))
                if Path(match).is_file() and wanted(Path(match), extensions)
            ]
            if not found:
                failures.append(failure(item, f"{item}: no media files match{_extension_hint(extensions)}"))
            for file in found:
                add(str(file), _stem_path(file.relative_to(base)))
        else:
            failures.append(failure(item, f"{item}: no such file or folder"))
    return Discovery(tuple(jobs), tuple(failures))


def failure(source: str, message: str) -> Outcome:
    return Outcome(source, Status.FAILED, message)


def _extension_hint(extensions: frozenset[str]) -> str:
    return "" if extensions == DEFAULT_EXTENSIONS else f" (extensions: {', '.join(sorted(extensions))})"


def wanted(path: Path, extensions: frozenset[str]) -> bool:
    return path.suffix.lstrip(".").lower() in extensions and not path.name.startswith(".")


def _media_in(folder: Path, recursive: bool, extensions: frozenset[str]) -> list[Path]:
    """The media files in ``folder`` (and its subfolders), hidden ones left out, in sorted order."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and wanted(p, extensions))
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found.extend(Path(root, name) for name in sorted(files) if wanted(Path(root, name), extensions))
    return [p for p in found if p.is_file()]


def _stem_path(relative: Path) -> Path:
    return relative.parent / relative.stem


def glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: ``talks/*/a.mp3`` -> ``talks``."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if GLOB_CHARS.search(part))
    return Path(*parts[:fixed]) if fixed else Path()


# -- planning ------------------------------------------------------------------------------------------------------


def plan(
    discovery: Discovery,
    formats: Sequence[str],
    output_dir: Path | None,
    existing: Existing = Existing.REFUSE,
) -> Plan:
    """Decide every output before any work.

    ``output_dir=None`` writes to standard output: exactly one format, and more than one input file only for
    ``txt`` and ``jsonl`` (the transcripts are concatenated; subtitle, JSON and TSV documents cannot be). Raises
    :class:`PlanError` for those cases and when two inputs would write the same file (compared without case,
    for case-insensitive file systems).
    """
    if not formats:
        raise PlanError("no output format")
    jobs = discovery.jobs
    if output_dir is None:
        if len(formats) != 1:
            raise PlanError(
                f"-o - writes one format to standard output, not {len(formats)} ({', '.join(formats)})"
            )
        if len(jobs) > 1 and formats[0] not in CONCATENABLE:
            raise PlanError(
                f"-o - with {len(jobs)} input files works for txt and jsonl only: {formats[0]} documents cannot be "
                "concatenated; write them to a folder with -o DIR"
            )
        tasks = tuple(Task(job, (Output(formats[0], None),)) for job in jobs)
        return Plan(tasks, discovery.failures)
    owners: dict[str, list[Job]] = {}
    for job in jobs:
        owners.setdefault(job.name.as_posix().casefold(), []).append(job)
    clashes = [group for group in owners.values() if len(group) > 1]
    if clashes:
        named = any(job.named for group in clashes for job in group)
        how = (
            "write them in separate runs with different -o folders" if named else "choose one type with --ext"
        )
        described = "; ".join(
            f"{', '.join(job.source for job in group[:-1])} and {group[-1].source} would "
            f"{'both' if len(group) == 2 else 'all'} be written to {group[0].output(output_dir, formats[0])}"
            for group in clashes
        )
        raise PlanError(f"{described}; rename them, or {how}")
    if jobs:
        check_output_dir(output_dir)
    tasks: list[Task] = []
    settled = list(discovery.failures)
    for job in jobs:
        outputs = tuple(
            Output(fmt, job.output(output_dir, fmt), existing is Existing.OVERWRITE) for fmt in formats
        )
        present = [o.path for o in outputs if o.path is not None and o.path.exists()]
        if not present or existing is Existing.OVERWRITE:
            tasks.append(Task(job, outputs))
        elif existing is Existing.SKIP:
            missing = tuple(o for o in outputs if o.path not in present)
            if missing:
                tasks.append(Task(job, missing))
            else:
                settled.append(Outcome(job.source, Status.SKIPPED, f"{job.source}: all outputs exist"))
        else:
            more = f" (and {len(present) - 1} more)" if len(present) > 1 else ""
            settled.append(
                failure(
                    job.source, f"{job.source}: {present[0]}{more} exists; use --overwrite or --skip-existing"
                )
            )
    return Plan(tuple(tasks), tuple(settled))


def check_output_dir(folder: Path) -> None:
    """Raise PlanError unless transcripts can be written under ``folder`` (made later if missing): it must be a
    folder, or its nearest existing parent must be one, and a file must be creatable there. Leaves nothing."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"cannot be made: {existing} is a file"
        raise PlanError(f"-o {folder} {where}; give a folder for the transcripts (or - for standard output)")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".samba-probe-"):
            pass
    except OSError as error:
        raise PlanError(f"-o {folder}: cannot write in {existing}: {error.strerror or error}") from None
