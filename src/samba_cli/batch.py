"""Batch transcription: inputs -> jobs -> output files, with the media of the next files decoded ahead.

:mod:`samba_cli.planning` turns the inputs into a :class:`~samba_cli.planning.Plan` (jobs and their output
files, decided before any work); a :class:`BatchTranscriber` then transcribes the jobs in order and
:func:`run_batch` writes each transcript atomically.

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
import functools
import io
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np
import soundfile as sf

from samba_cli.atomic import write_all_atomically
from samba_cli.audio import SAMPLE_RATE, ffmpeg_path, is_stream, iter_audio
from samba_cli.cues import CueOptions
from samba_cli.errors import SambaError
from samba_cli.planning import Outcome, Plan, Status, Task, failure
from samba_cli.results import Segment, TranscriptionInfo
from samba_cli.writers import Writer, get_writer

if TYPE_CHECKING:
    from samba_cli.api import Transcriber
    from samba_cli.options import TranscribeOptions

PREFETCH_SECONDS = 300.0  # decoded audio held ahead of the model: 19 MB of float32 at 16 kHz
BLOCK_SECONDS = 30.0  # decoded audio per prefetched block
_DURATION = re.compile(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")
_PROBE_TIMEOUT = 30.0  # seconds allowed to ffmpeg for reading one file's header
_ESTIMATE_EVERY = 1.0  # seconds between two updates of the estimated total duration


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
    """The duration (seconds) the media header declares; None for stdin, a named pipe or another stream (reading
    its header would take audio away from the transcription), or when unknown. Reads headers only."""
    if is_stream(source) or not Path(source).is_file():
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
        if any(map(is_stream, self.sources)):
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
                yield failure(task.job.source, str(event.error))
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
            return failure(source, f"{source}: cannot write {error.path}: {error.reason}")
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
        outcome = failure(closed, f"{closed}: cannot write to standard output: its reader closed it{rest}")
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
    to_files = [output for output in task.outputs if output.path is not None]
    files = [
        (output.path, functools.partial(writers[output.format].write, segments, info)) for output in to_files
    ]
    try:
        write_all_atomically(files, replace=[output.replace for output in to_files])
    except FileExistsError as error:
        raise _WriteError(
            Path(error.filename),
            "it was created by someone else while this run worked (another run writing the same folder?); "
            "left as it is, nothing of this input written; use --overwrite to replace it",
        ) from error
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
