"""Batch transcription: inputs -> jobs -> output files, with the media of the next files decoded ahead.

:func:`discover` expands files, folders and glob patterns into :class:`Job` s; :func:`plan` maps every job to
its output files, refuses collisions and applies the overwrite policy before any work is done; a
:class:`BatchTranscriber` then transcribes the jobs in order and writes each transcript atomically.

Throughput: a :class:`Prefetcher` thread decodes the media (ffmpeg) of the current and the following files
while the model runs, holding at most ``prefetch_seconds`` of decoded samples (plus one block) in memory.
Windowing and VAD run in the model's thread (silero-vad changes torch's process-wide thread count). Windows of
consecutive files share encoder batches and their segments share decoder batches
(:meth:`samba_cli.api.Transcriber.transcribe_many`), so a folder of short files runs in full batches; a file is
written as soon as its last segment is decoded.

Interrupts: a file being transcribed when KeyboardInterrupt arrives leaves no output at all (transcripts are
written only once the file is complete); while a finished transcript is being written, SIGINT is held back
until all its formats are written, so no temporary or partial file is left either.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import functools
import glob
import io
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np
import soundfile as sf

from samba_cli.atomic import write_all_atomically
from samba_cli.audio import SAMPLE_RATE, STDIN, ffmpeg_path, iter_audio
from samba_cli.cues import CueOptions
from samba_cli.errors import SambaError
from samba_cli.results import Segment, TranscriptionInfo
from samba_cli.writers import Writer, get_writer

if TYPE_CHECKING:
    from samba_cli.api import Transcriber
    from samba_cli.pipeline import TranscribeOptions

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
PREFETCH_SECONDS = 300.0  # decoded audio held ahead of the model: 19 MB of float32 at 16 kHz
BLOCK_SECONDS = 30.0  # decoded audio per prefetched block
_GLOB_CHARS = re.compile(r"[*?[]")
_DURATION = re.compile(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")
_PROBE_TIMEOUT = 30.0  # seconds allowed to ffmpeg for reading one file's header
_ESTIMATE_EVERY = 1.0  # seconds between two updates of the estimated total duration


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


@dataclass(frozen=True)
class Task:
    job: Job
    outputs: tuple[Output, ...]  # what to write once the job is transcribed


@dataclass(frozen=True)
class Plan:
    tasks: tuple[Task, ...]  # jobs to transcribe, in order
    settled: tuple[Outcome, ...]  # inputs decided before any work: failed (missing, refused) or skipped


@dataclass(frozen=True)
class Summary:
    outcomes: tuple[Outcome, ...]  # one per input file (or input that named none), in processing order
    wall_seconds: float  # time spent transcribing and writing, model loading excluded
    interrupted: bool = False  # KeyboardInterrupt stopped the run; the remaining inputs have no outcome
    stdout_closed: bool = (
        False  # the reader of standard output closed it; the remaining inputs have no outcome
    )

    def count(self, status: Status) -> int:
        return sum(outcome.status is status for outcome in self.outcomes)

    @property
    def audio_seconds(self) -> float:
        return sum(outcome.duration for outcome in self.outcomes)

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio transcribed per second of wall time (0 when nothing ran)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class Reporter(Protocol):
    """Told about a batch as it runs (progress bars, log lines). Called from the thread that runs the batch,
    except :meth:`expect`, which may be called from a background thread."""

    def begin(self, total: int) -> None:
        """``total`` inputs will be reported as finished, the settled ones first."""

    def expect(self, seconds: float) -> None:
        """The audio of all the tasks is estimated to last ``seconds`` (updated as headers are read)."""

    def started(self, task: Task) -> None:
        """Transcription of ``task`` begins."""

    def progress(self, seconds: float) -> None:
        """The current file is transcribed up to ``seconds`` of its source time."""

    def finished(self, outcome: Outcome) -> None:
        """An input is done, skipped or failed."""

    def end(self, summary: Summary) -> None:
        """The batch is over (or interrupted)."""


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
                failures.append(_failed(item, f"{item}: no media files {where}{_extension_hint(extensions)}"))
            for file in found:
                add(str(file), _stem_path(file.relative_to(path)))
        elif path.exists():
            add(item, Path(path.stem), named=True)
        elif _GLOB_CHARS.search(item):
            base = _glob_base(item)
            found = [
                Path(match)
                for match in sorted(glob.glob(item, recursive=True))
                if Path(match).is_file() and _wanted(Path(match), extensions)
            ]
            if not found:
                failures.append(_failed(item, f"{item}: no media files match{_extension_hint(extensions)}"))
            for file in found:
                add(str(file), _stem_path(file.relative_to(base)))
        else:
            failures.append(_failed(item, f"{item}: no such file or folder"))
    return Discovery(tuple(jobs), tuple(failures))


def _failed(source: str, message: str) -> Outcome:
    return Outcome(source, Status.FAILED, message)


def _extension_hint(extensions: frozenset[str]) -> str:
    return "" if extensions == DEFAULT_EXTENSIONS else f" (extensions: {', '.join(sorted(extensions))})"


def _wanted(path: Path, extensions: frozenset[str]) -> bool:
    return path.suffix.lstrip(".").lower() in extensions and not path.name.startswith(".")


def _media_in(folder: Path, recursive: bool, extensions: frozenset[str]) -> list[Path]:
    """The media files in ``folder`` (and its subfolders), hidden ones left out, in sorted order."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and _wanted(p, extensions))
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found.extend(Path(root, name) for name in sorted(files) if _wanted(Path(root, name), extensions))
    return [p for p in found if p.is_file()]


def _stem_path(relative: Path) -> Path:
    return relative.parent / relative.stem


def _glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: ``talks/*/a.mp3`` -> ``talks``."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
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
    ``txt`` (the transcripts are concatenated; subtitle, JSON and TSV documents cannot be). Raises
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
        if len(jobs) > 1 and formats[0] != "txt":
            raise PlanError(
                f"-o - with {len(jobs)} input files works for txt only: {formats[0]} documents cannot be "
                "concatenated; write them to a folder with -o DIR"
            )
        tasks = tuple(Task(job, (Output(formats[0], None),)) for job in jobs)
        return Plan(tasks, discovery.failures)
    owners: dict[str, Job] = {}
    for job in jobs:
        key = job.name.as_posix().casefold()
        if key in owners:
            how = (
                "write them in two runs with different -o folders"
                if job.named or owners[key].named
                else "choose one type with --ext"
            )
            raise PlanError(
                f"{owners[key].source} and {job.source} would both be written to "
                f"{job.output(output_dir, formats[0])}; rename one, or {how}"
            )
        owners[key] = job
    if jobs:
        check_output_dir(output_dir)
    tasks: list[Task] = []
    settled = list(discovery.failures)
    for job in jobs:
        outputs = tuple(Output(fmt, job.output(output_dir, fmt)) for fmt in formats)
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
                _failed(
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


# -- decoding ahead ------------------------------------------------------------------------------------------------


class Prefetcher:
    """Decodes sources in order in a background thread, at most ``max_seconds`` of samples ahead of the reader.

    Call :meth:`blocks` with indices 0, 1, 2, ... in order (skipping is allowed, going back is not). Asking for
    a source drops what is left of the earlier ones: their decoding stops and their queued blocks are freed.
    Memory: at most ``max_seconds`` of queued samples plus one block queued and one being read.
    """

    def __init__(
        self,
        sources: Sequence[str],
        max_seconds: float = PREFETCH_SECONDS,
        block_seconds: float = BLOCK_SECONDS,
        open_audio: Callable[[str, float], Iterator[np.ndarray]] = iter_audio,
    ) -> None:
        self._sources = tuple(sources)
        self._limit = max(1, round(max_seconds * SAMPLE_RATE))  # samples
        self._block_seconds = block_seconds
        self._open = open_audio
        # (source index, item): an (N,) float32 block, None at the end of a source, or the error that ended it
        self._items: collections.deque[tuple[int, np.ndarray | Exception | None]] = collections.deque()
        self._queued = 0  # samples in _items
        self._dropped = -1  # sources up to this index are no longer wanted
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._produce, name="samba-prefetch", daemon=True)
        self._thread.start()

    def blocks(self, index: int) -> Iterator[np.ndarray]:
        """The (N,) float32 blocks of source ``index``; raises the source's error (a MediaError) when it fails.

        Closing the iterator early drops the rest of the source.
        """
        with self._cond:
            if index <= self._dropped:
                raise ValueError(f"source {index} was already read or dropped")
            self._dropped = index - 1
            self._cond.notify_all()
        return self._read(index)

    def _read(self, index: int) -> Iterator[np.ndarray]:
        finished = False
        try:
            while True:
                item = self._take(index)
                if item is None:
                    finished = True
                    return
                if isinstance(item, Exception):
                    finished = True
                    raise item
                yield item
        finally:
            if not finished:
                with self._cond:
                    self._dropped = max(self._dropped, index)
                    self._cond.notify_all()

    def close(self) -> None:
        """Stop decoding (ffmpeg is killed) and free the queue. The thread is not waited for."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._queued = 0
            self._cond.notify_all()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, index: int) -> np.ndarray | Exception | None:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the prefetcher is closed")
                while self._items and self._items[0][0] < index:  # left over from dropped sources
                    self._pop()
                if self._items:
                    return self._pop()
                self._cond.wait()

    def _pop(self) -> np.ndarray | Exception | None:
        _, item = self._items.popleft()
        if isinstance(item, np.ndarray):
            self._queued -= item.size
        self._cond.notify_all()
        return item

    def _put(self, index: int, item: np.ndarray | Exception | None) -> bool:
        """Queue an item, waiting for room; False when the source is dropped or the prefetcher closed."""
        size = item.size if isinstance(item, np.ndarray) else 0
        with self._cond:
            while size and self._queued >= self._limit and not self._closed and index > self._dropped:
                self._cond.wait()
            if self._closed or (size and index <= self._dropped):
                return False
            self._items.append((index, item))
            self._queued += size
            self._cond.notify_all()
            return True

    def _produce(self) -> None:
        for index, source in enumerate(self._sources):
            with self._cond:
                if self._closed:
                    return
                if index <= self._dropped:
                    continue
            end: Exception | None = None
            try:
                with contextlib.closing(self._open(source, self._block_seconds)) as blocks:
                    for block in blocks:
                        if not self._put(index, block):
                            break
            except Exception as error:  # handed to the reader, who reports it as this source's failure
                end = error
            self._put(index, end)


# -- durations for the ETA -----------------------------------------------------------------------------------------


def probe_duration(source: str) -> float | None:
    """The duration (seconds) the media header declares; None for stdin or when unknown. Reads headers only."""
    if source == STDIN:
        return None
    with contextlib.suppress(sf.LibsndfileError, RuntimeError, OSError):
        if Path(source).suffix.lower() in (".wav", ".wave", ".flac"):
            return float(sf.info(source).duration)
    try:
        result = subprocess.run(
            [ffmpeg_path(), "-hide_banner", "-nostdin", "-i", f"file:{os.path.abspath(source)}"],
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, SambaError):
        return None
    match = _DURATION.search(result.stderr.decode("utf-8", "replace"))
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class _DurationEstimator(threading.Thread):
    """Reads the durations of the sources in the background and reports the estimated total as it goes: the
    sum so far, scaled up to all sources. Reports nothing when a duration cannot be known (stdin)."""

    def __init__(self, sources: Sequence[str], report: Callable[[float], None]) -> None:
        super().__init__(name="samba-durations", daemon=True)
        self.sources = tuple(sources)  # media paths, in order
        self.report = report  # called with the estimated total, in seconds
        self.stopped = threading.Event()  # set to stop early

    def run(self) -> None:
        if STDIN in self.sources:
            return
        total, last = 0.0, time.monotonic()
        for count, source in enumerate(self.sources, start=1):
            if self.stopped.is_set():
                return
            duration = probe_duration(source)
            total += duration or 0.0
            now = time.monotonic()
            if count == len(self.sources) or now - last >= _ESTIMATE_EVERY:
                self.report(total * len(self.sources) / count)
                last = now


# -- running -------------------------------------------------------------------------------------------------------


class BatchTranscriber:
    """Transcribes planned tasks with one loaded model and writes their outputs.

    Raises OptionError (a ValueError) at construction for options the model cannot run (``decoder="ctc"``
    without a CTC head, a lexicon without a language model).
    """

    def __init__(
        self,
        transcriber: Transcriber,
        options: TranscribeOptions,
        cue_options: CueOptions | None = None,
        prefetch_seconds: float = PREFETCH_SECONDS,
    ) -> None:
        self.transcriber = transcriber
        self.options = transcriber.resolve_options(options)
        self.cue_options = cue_options  # subtitle layout for srt and vtt
        self.prefetch_seconds = prefetch_seconds  # decoded audio held ahead of the model

    def run_tasks(
        self,
        tasks: Sequence[Task],
        blocks: Iterable[Iterator[np.ndarray]],
        reporter: Reporter,
        stdout: BinaryIO | None = None,
    ) -> Iterator[Outcome]:
        """Transcribe tasks from their decoded ``blocks`` (one iterator per task, taken lazily in order), with
        encoder and decoder batches shared across tasks; write each task's outputs, all or none, as soon as its
        last segment is decoded, and give its outcome. ``reporter.started`` comes before a task's progress."""
        events, infos = self.transcriber.transcribe_many(
            zip(blocks, (task.job.source for task in tasks), strict=True), self.options
        )
        current, collected = -1, []
        for event in events:
            while current < event.source:
                current, collected = current + 1, []
                reporter.started(tasks[current])
            task, info = tasks[event.source], infos[event.source]
            if event.segment is not None:
                collected.append(event.segment)
                reporter.progress(event.segment.end)
            elif event.error is not None:
                yield _failed(task.job.source, str(event.error))
            else:
                yield self._write(task, collected, info, stdout)

    def _write(
        self, task: Task, segments: list[Segment], info: TranscriptionInfo, stdout: BinaryIO | None
    ) -> Outcome:
        source = task.job.source
        writers = {output.format: get_writer(output.format, self.cue_options) for output in task.outputs}
        try:
            with _interrupts_deferred():
                written = _write_outputs(task, segments, info, writers, stdout)
        except _WriteError as error:
            return _failed(source, f"{source}: cannot write {error.path}: {error.reason}")
        return Outcome(source, Status.DONE, duration=info.duration, outputs=written)


def run_batch(
    plan: Plan,
    reporter: Reporter,
    transcriber: BatchTranscriber | None,
    stdout: BinaryIO | None = None,
    estimate_duration: bool = True,
) -> Summary:
    """Report the settled inputs, then transcribe ``plan.tasks`` in order; a failure is reported and the batch
    goes on. ``transcriber`` may be None only when there are no tasks (no model needs loading then).

    ``stdout`` receives the UTF-8 transcripts of outputs whose path is None. ``estimate_duration`` reads the
    media headers in the background so that the reporter can show an ETA. KeyboardInterrupt ends the run: the
    summary then has ``interrupted=True`` and the inputs finished so far.
    """
    start = time.monotonic()
    outcomes = list(plan.settled)
    reporter.begin(len(plan.settled) + len(plan.tasks))
    for outcome in plan.settled:
        reporter.finished(outcome)
    if plan.tasks and transcriber is None:
        raise ValueError("a transcriber is needed to run tasks")
    sources = [task.job.source for task in plan.tasks]
    estimator = _DurationEstimator(sources, reporter.expect)
    if estimate_duration and sources:
        estimator.start()
    interrupted = False
    closed = None
    finished = 0  # tasks with an outcome
    try:
        with Prefetcher(sources, transcriber.prefetch_seconds if transcriber else 0.0) as prefetcher:
            if transcriber is not None and plan.tasks:
                blocks = (prefetcher.blocks(index) for index in range(len(plan.tasks)))
                for outcome in transcriber.run_tasks(plan.tasks, blocks, reporter, stdout):
                    finished += 1
                    outcomes.append(outcome)
                    reporter.finished(outcome)
    except KeyboardInterrupt:
        interrupted = True
    except _StdoutClosed as error:
        closed = error.source
    finally:
        estimator.stopped.set()
    if closed is not None:
        left = len(plan.tasks) - finished - 1
        rest = f"; {left} more input{'s' if left != 1 else ''} not transcribed" if left else ""
        outcome = _failed(closed, f"{closed}: cannot write to standard output: its reader closed it{rest}")
        outcomes.append(outcome)
        reporter.finished(outcome)
    summary = Summary(
        tuple(outcomes), time.monotonic() - start, interrupted, stdout_closed=closed is not None
    )
    reporter.end(summary)
    return summary


class _StdoutClosed(Exception):
    """Standard output was closed by its reader (a broken pipe) while ``source``'s transcript was written."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.source = source


class _WriteError(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _write_outputs(
    task: Task,
    segments: Sequence[Segment],
    info: TranscriptionInfo,
    writers: Mapping[str, Writer],
    stdout: BinaryIO | None,
) -> tuple[Path, ...]:
    """Write every output of a task, or none: all the files are staged first and then swapped in, so after any
    failure (a full disk, a target that is a folder) the previous files are as they were."""
    files = [
        (output.path, functools.partial(writers[output.format].write, segments, info))
        for output in task.outputs
        if output.path is not None
    ]
    try:
        write_all_atomically(files)
    except OSError as error:
        where = Path(error.filename) if error.filename else files[0][0]
        raise _WriteError(where, error.strerror or str(error)) from error
    for output in task.outputs:
        if output.path is None:
            if stdout is None:
                raise ValueError("a task writes to standard output but no stdout stream was given")
            text = io.StringIO()
            writers[output.format].write(segments, info, text)
            try:
                stdout.write(text.getvalue().encode("utf-8"))
                stdout.flush()
            except BrokenPipeError as error:
                raise _StdoutClosed(task.job.source) from error
    return tuple(path for path, _ in files)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT back while the block runs, then raise KeyboardInterrupt if one came (main thread only).

    A process that ignores SIGINT (started in the background by a non-interactive shell, as ``cmd &`` in a
    script) keeps ignoring it: the block then changes nothing.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if received:
        raise KeyboardInterrupt
