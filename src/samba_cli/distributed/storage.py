"""Local paths and fsspec URLs side by side: discovery, output planning, atomic writes and the Parquet index.

A *location* is a local path or an fsspec URL (``s3://bucket/key``, ``gs://...``, ``memory://...``). Local inputs
are discovered by :func:`samba_cli.planning.discover` and local outputs planned by :func:`samba_cli.planning.plan`, so
names, collisions and the overwrite policy are those of the local batch mode; URLs follow the same rules through
fsspec. Credentials and endpoints come from the usual places of each store (``AWS_*`` variables, ``~/.aws``,
``FSSPEC_S3_ENDPOINT_URL``, ...).

Atomicity: a local file is written to a temporary name and renamed; an object is written with one PUT, which
object stores publish whole or not at all. The index is written last, after every transcript.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from samba_cli import planning
from samba_cli.atomic import write_all_atomically, write_atomically
from samba_cli.cues import CueOptions
from samba_cli.planning import Discovery, Existing, Job, Outcome, Output, Plan, PlanError, Status, Task
from samba_cli.results import Segment, TranscriptionInfo
from samba_cli.writers import get_writer

INDEX_NAME = "index.parquet"  # the index's name in the output folder unless one is chosen
_PROTOCOL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

# One row per input, done, skipped or failed. The worker's output columns plus ``name``.
INDEX_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # the input, as found (local path or URL)
        ("name", pa.string()),  # output name without extension, relative to the output folder
        ("status", pa.string()),  # done, skipped or failed
        ("error", pa.string()),  # failed: one line naming the input and the cause; skipped: why
        ("duration", pa.float64()),  # seconds of audio transcribed
        ("text", pa.string()),  # the whole transcript, segments joined by spaces
        ("segments", pa.string()),  # JSON list: the json format's "segments" (start, end, text, words, ...)
        ("language", pa.string()),
        ("model", pa.string()),
        ("decode_seconds", pa.float64()),  # the batch's wall time shared across its inputs by duration
        ("outputs", pa.string()),  # JSON list of the locations written
    ]
)


def is_url(location: str) -> bool:
    """True for ``proto://...`` other than ``file://``."""
    match = _PROTOCOL.match(location)
    return match is not None and match.group(1).lower() != "file"


def _local(location: str) -> str:
    return location[len("file://") :] if location.lower().startswith("file://") else location


# -- discovery -----------------------------------------------------------------------------------------------------


def discover(inputs: Sequence[str], recursive: bool, extensions: frozenset[str]) -> Discovery:
    """Jobs for local paths (exactly as :func:`samba_cli.planning.discover`) and URLs: a URL naming an object is taken
    whatever its extension; a prefix ("folder") gives its media objects, ``recursive`` also below; a glob gives its
    media matches, named relative to the pattern's fixed leading part. Local inputs come first, then URLs."""
    local = planning.discover([_local(item) for item in inputs if not is_url(item)], recursive, extensions)
    jobs, failures = list(local.jobs), list(local.failures)
    seen = {job.source for job in jobs}
    for item in (item for item in inputs if is_url(item)):
        try:
            found = _discover_url(item, recursive, extensions)
        except Exception as error:  # no credentials, no such bucket, network: that input fails
            failures.append(Outcome(item, Status.FAILED, f"{item}: {_one_line(error)}"))
            continue
        if isinstance(found, Outcome):
            failures.append(found)
            continue
        for job in found:
            if job.source not in seen:
                seen.add(job.source)
                jobs.append(job)
    return Discovery(tuple(jobs), tuple(failures))


def _discover_url(item: str, recursive: bool, extensions: frozenset[str]) -> list[Job] | Outcome:
    fs, path = fsspec.core.url_to_fs(item)
    path = path.rstrip("/")
    if fs.isfile(path):
        return [Job(item, Path(PurePosixPath(path).stem))]
    if fs.isdir(path):
        if recursive:
            files = fs.find(path)
        else:
            files = [entry["name"] for entry in fs.ls(path, detail=True) if entry["type"] == "file"]
        base, empty = PurePosixPath(path), "no media objects under this prefix"
    elif planning.GLOB_CHARS.search(path):
        files = [name for name, entry in fs.glob(path, detail=True).items() if entry["type"] == "file"]
        base, empty = PurePosixPath(planning.glob_base(path).as_posix()), "no media objects match"
    else:
        return Outcome(item, Status.FAILED, f"{item}: no such object or prefix")
    jobs = []
    for name in sorted(files):
        relative = PurePosixPath(name).relative_to(base)
        if planning.wanted(Path(relative), extensions) and not any(p.startswith(".") for p in relative.parts):
            jobs.append(Job(fs.unstrip_protocol(name), Path(relative.parent, relative.stem)))
    if not jobs:
        hint = "" if recursive or planning.GLOB_CHARS.search(path) else " (-r searches below it)"
        return Outcome(item, Status.FAILED, f"{item}: {empty}{hint}")
    return jobs


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# -- planning ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the outputs go: a local folder or a URL prefix."""

    root: str  # as given: a folder or URL
    fs: Any  # the fsspec file system of root
    path: str  # root inside fs (no protocol)

    @classmethod
    def of(cls, root: str) -> Target:
        fs, path = fsspec.core.url_to_fs(_local(root))
        return cls(root, fs, path.rstrip("/") or path)

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def locate(self, output: Path) -> str:
        """The location a worker writes to: a local path, or the URL of an output planned under :attr:`path`."""
        return str(output) if self.local else self.fs.unstrip_protocol(output.as_posix())

    def child(self, name: str) -> str:
        """The location of a file directly in the root (the index)."""
        return self.locate(Path(self.path, name))


def plan(discovery: Discovery, formats: Sequence[str], target: Target, overwrite: bool) -> Plan:
    """Every input's outputs under ``target`` (the local batch mode's mirrored names); an input whose outputs all
    exist is skipped unless ``overwrite``, one with some missing writes only those. Raises PlanError when two inputs
    would write the same file."""
    existing = Existing.OVERWRITE if overwrite else Existing.SKIP
    if target.local:
        return planning.plan(discovery, formats, Path(target.path), existing)
    if not formats:
        raise PlanError("no output format")
    owners: dict[str, Job] = {}
    for job in discovery.jobs:
        key = job.name.as_posix().casefold()
        if key in owners:
            raise PlanError(f"{owners[key].source} and {job.source} would both be written to {job.name}")
        owners[key] = job
    present = set(target.fs.find(target.path)) if not overwrite and target.fs.exists(target.path) else set()
    root = Path(target.path)
    tasks, settled = [], list(discovery.failures)
    for job in discovery.jobs:
        outputs = tuple(Output(fmt, job.output(root, fmt)) for fmt in formats)
        missing = tuple(o for o in outputs if o.path is not None and o.path.as_posix() not in present)
        if missing:
            tasks.append(Task(job, missing))
        else:
            settled.append(Outcome(job.source, Status.SKIPPED, f"{job.source}: all outputs exist"))
    return Plan(tuple(tasks), tuple(settled))


# -- writing -------------------------------------------------------------------------------------------------------


def write_transcripts(
    outputs: Sequence[tuple[str, str]],
    segments: Sequence[Segment],
    info: TranscriptionInfo,
    cue_options: CueOptions | None = None,
) -> list[str]:
    """Write one transcript in each ``(format, location)``. Local files go through
    :func:`~samba_cli.atomic.write_all_atomically` first (all staged, then swapped: old files survive a failure);
    then objects, one PUT each (an object appears whole; ones written before a failure are removed). Returns
    the locations."""
    writers = [(get_writer(fmt, cue_options), location) for fmt, location in outputs]
    write_all_atomically(
        [
            (Path(_local(location)), lambda stream, w=writer: w.write(segments, info, stream))
            for writer, location in writers
            if not is_url(location)
        ]
    )
    written: list[str] = []
    try:
        for writer, location in writers:
            if is_url(location):
                text = io.StringIO()
                writer.write(segments, info, text)
                fs, path = fsspec.core.url_to_fs(location)
                fs.pipe_file(path, text.getvalue().encode("utf-8"))
                written.append(location)
    except BaseException:
        for location in written:
            fs, path = fsspec.core.url_to_fs(location)
            fs.rm_file(path)
        raise
    return [location for _, location in outputs]


def write_index(rows: Sequence[Mapping[str, Any]], location: str) -> None:
    """Write the index (:data:`INDEX_SCHEMA`, rows sorted by path) to a local path (temporary file, then rename)
    or a URL (one PUT)."""
    table = pa.Table.from_pylist(sorted(rows, key=lambda row: row["path"]), schema=INDEX_SCHEMA)
    if is_url(location):
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        fs, path = fsspec.core.url_to_fs(location)
        fs.pipe_file(path, buffer.getvalue().to_pybytes())
        return
    write_atomically(Path(_local(location)), lambda stream: pq.write_table(table, stream), binary=True)


def fetch(location: str, directory: str) -> str:
    """Copy the object at a URL into ``directory`` (same file name) and return the local path."""
    fs, path = fsspec.core.url_to_fs(location)
    local = os.path.join(directory, f"{secrets.token_hex(4)}-{PurePosixPath(path).name}")
    fs.get_file(path, local)
    return local
