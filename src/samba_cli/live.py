"""`samba transcribe --live`: one input transcribed as it arrives, each output written as its text becomes final.

The transcript comes from :meth:`samba_cli.api.Transcriber.transcribe_live`; :class:`samba_cli.writers.LiveWriter`
turns each update into the text of each format, which is appended to its file (or standard output) and flushed.
Files are opened at the first update, once the media has been read, so that an input that cannot be read leaves
existing files as they were. A first Ctrl-C ends the input where it is: what was read is transcribed and written,
then the run ends with exit status 130; a second Ctrl-C stops at once, between two writes.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from samba_cli.audio import reset_reading, stop_reading
from samba_cli.batch import Reporter, Summary
from samba_cli.cues import CueOptions
from samba_cli.errors import SambaError
from samba_cli.planning import Outcome, Status, Task, failure
from samba_cli.results import Segment
from samba_cli.writers import LiveWriter

if TYPE_CHECKING:
    from samba_cli.api import Transcriber
    from samba_cli.options import ResolvedOptions, TranscribeOptions


def run_live(
    task: Task,
    transcriber: Transcriber,
    options: TranscribeOptions | ResolvedOptions,
    cue_options: CueOptions | None,
    reporter: Reporter,
    stdout: BinaryIO | None = None,
    stream_start: float | None = None,
) -> Summary:
    """Transcribe ``task``'s input live and write its outputs as they grow; the summary as :func:`run_batch`'s
    (``interrupted`` after a Ctrl-C, ``stdout_closed`` when the reader of standard output closed it).
    ``stream_start``: when the stream began (``time.monotonic()``), for the delay (see ``transcribe_live``)."""
    start = time.monotonic()
    reporter.begin(1)
    reporter.started(task)
    outputs = _Outputs(task, cue_options, stdout)
    closed = False
    with _ctrl_c() as stop:
        try:
            updates, info = transcriber.transcribe_live(task.job.source, options, stream_start=stream_start)
            for update in updates:
                with stop.deferred():
                    outputs.write(update.segments, None if update.final else update.until, info.duration)
                reporter.progress(update.until)
            outcome = Outcome(task.job.source, Status.DONE, duration=info.duration, outputs=outputs.paths)
        except SambaError as error:
            outcome = failure(task.job.source, str(error))
        except BrokenPipeError:
            closed = True
            outcome = failure(
                task.job.source, f"{task.job.source}: cannot write to standard output: its reader closed it"
            )
        except OSError as error:
            where = error.filename or task.job.source
            outcome = failure(
                task.job.source, f"{task.job.source}: cannot write {where}: {error.strerror or error}"
            )
        finally:
            outputs.close()
    reporter.finished(outcome)
    summary = Summary((outcome,), time.monotonic() - start, interrupted=stop.stopped, stdout_closed=closed)
    reporter.end(summary)
    return summary


class _Outputs:
    """A task's outputs, opened at the first write; each piece written whole and flushed."""

    def __init__(self, task: Task, cue_options: CueOptions | None, stdout: BinaryIO | None) -> None:
        self.task = task
        self.writers = [LiveWriter(output.format, cue_options) for output in task.outputs]
        self.stdout = stdout
        self.files: list[BinaryIO] = []  # the files opened (not standard output)
        self.sinks: list[BinaryIO] | None = None  # per output, where its text goes
        self.paths = tuple(output.path for output in task.outputs if output.path is not None)

    def write(self, segments: Sequence[Segment], until: float | None, duration: float) -> None:
        if self.sinks is None:
            self.sinks = [self._open(output.path) for output in self.task.outputs]
            for writer, sink in zip(self.writers, self.sinks, strict=True):
                _put(sink, writer.begin())
        for writer, sink in zip(self.writers, self.sinks, strict=True):
            _put(sink, writer.add(segments, until, duration))

    def _open(self, path: Path | None) -> BinaryIO:
        if path is None:
            if self.stdout is None:
                raise ValueError("a task writes to standard output but no stdout stream was given")
            return self.stdout
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(open(path, "wb"))  # noqa: SIM115 - closed by close()
        return self.files[-1]

    def close(self) -> None:
        for file in self.files:
            with contextlib.suppress(OSError):
                file.close()


def _put(sink: BinaryIO, text: str) -> None:
    """UTF-8 text written and flushed, so that a reader of the file or pipe sees it now."""
    if text:
        sink.write(text.encode("utf-8"))
        sink.flush()


class _Stop:
    """The Ctrl-C state of a live run."""

    def __init__(self) -> None:
        self.stopped = False  # a first Ctrl-C ended the input
        self.writing = False  # a write is under way: a second Ctrl-C waits for its end
        self.pending = False  # a second Ctrl-C came during a write

    def __call__(self, signum, frame) -> None:
        if not self.stopped:
            self.stopped = True
            stop_reading()
            print(
                "stopping: transcribing what was read (Ctrl-C again to quit at once)",
                file=sys.stderr,
                flush=True,
            )
        elif self.writing:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A second Ctrl-C during the block takes effect after it: no output is left with half a cue."""
        self.writing = True
        try:
            yield
        finally:
            self.writing = False
        if self.pending:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _ctrl_c() -> Iterator[_Stop]:
    """Ctrl-C handled as :func:`run_live` says, in the main thread of a process that does not ignore it."""
    stop = _Stop()
    reset_reading()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield stop
        return
    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        reset_reading()
