"""What a batch shows on stderr: a rich progress bar on a terminal, plain log lines otherwise, errors only when
quiet. Every reporter writes to stderr; stdout carries transcripts only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from samba_cli import batch
from samba_cli.audio import STDIN
from samba_cli.batch import Summary
from samba_cli.planning import Outcome, Status

_PACKAGE_LOGGER = "samba_cli"


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``3723.4`` -> ``1:02:03``)."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def summary_line(summary: Summary) -> str:
    """``3 done, 1 skipped, 1 failed: 1:02:03 of audio in 0:05:12 (11.9x real time)``."""
    counts = ", ".join(f"{summary.count(status)} {status.value}" for status in Status)
    timing = f"{format_duration(summary.audio_seconds)} of audio in {format_duration(summary.wall_seconds)}"
    speed = f" ({summary.real_time_factor:.1f}x real time)" if summary.audio_seconds else ""
    prefix = "interrupted: " if summary.interrupted else ""
    return f"{prefix}{counts}: {timing}{speed}"


def display_name(source: str) -> str:
    """How an input is named in progress lines: ``stdin`` for ``-``."""
    return "stdin" if source == STDIN else source


def _say(console: Console, text: str, style: str | None = None) -> None:
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


class QuietReporter:
    """Prints failures only, one line each."""

    def __init__(self, console: Console) -> None:
        self.console = console  # stderr

    def note(self, text: str) -> None:
        """An informational line (not shown when quiet)."""

    def begin(self, total: int) -> None:
        pass

    def expect(self, seconds: float) -> None:
        pass

    def started(self, task: batch.Task) -> None:
        pass

    def progress(self, seconds: float) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        if outcome.status is Status.FAILED:
            _say(self.console, f"error: {outcome.message}", "red")

    def end(self, summary: Summary) -> None:
        pass


class LogReporter(QuietReporter):
    """One plain line per finished input, and the summary: for logs and pipes, where a bar cannot redraw."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        super().__init__(console)
        self.verbose = verbose  # also name the skipped inputs and the files written
        self.total = 0  # inputs in the batch
        self.count = 0  # inputs finished so far

    def note(self, text: str) -> None:
        _say(self.console, text)

    def begin(self, total: int) -> None:
        self.total = total

    def finished(self, outcome: Outcome) -> None:
        self.count += 1
        where = f"[{self.count}/{self.total}]"
        if outcome.status is Status.FAILED:
            _say(self.console, f"{where} error: {outcome.message}", "red")
        elif outcome.status is Status.SKIPPED:
            if self.verbose:
                _say(self.console, f"{where} skipped: {outcome.message}")
        else:
            written = (
                f" -> {', '.join(map(str, outcome.outputs))}" if self.verbose and outcome.outputs else ""
            )
            _say(
                self.console,
                f"{where} {display_name(outcome.source)}: {format_duration(outcome.duration)} of audio{written}",
            )

    def end(self, summary: Summary) -> None:
        _say(self.console, summary_line(summary))


class _AudioColumn(ProgressColumn):
    """Audio transcribed so far (the task's completed seconds)."""

    def render(self, task: Task) -> Text:
        return Text(f"{format_duration(task.completed)} audio", style="progress.download")


class _SpeedColumn(ProgressColumn):
    """Audio seconds per wall-clock second since the start."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(f"{task.completed / elapsed:.1f}x" if elapsed > 0 else "-x", style="progress.data.speed")


def remaining_seconds(total: float | None, done: float, elapsed: float) -> float | None:
    """Wall seconds left to transcribe ``total`` seconds of audio, ``done`` of them in ``elapsed`` wall seconds:
    the audio left at the average speed so far. None until something is done or while the total is unknown."""
    if total is None or done <= 0 or elapsed <= 0:
        return None
    return max(total - done, 0.0) * elapsed / done


class _RemainingColumn(ProgressColumn):
    """Time left, from the audio seconds left and the average speed since the start. It is worked out at every
    refresh, so it grows while a long file gives no progress instead of sitting at a stale estimate."""

    def render(self, task: Task) -> Text:
        left = remaining_seconds(task.total, task.completed, task.elapsed or 0.0)
        return Text(
            f"{'-:--:--' if left is None else format_duration(left)} left", style="progress.remaining"
        )


class RichReporter(LogReporter):
    """A live bar on stderr: files done/total, audio done, x real time and time left (once durations are known)."""

    def __init__(
        self, console: Console, verbose: bool = False, get_time: Callable[[], float] | None = None
    ) -> None:
        super().__init__(console, verbose)
        self.bar = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            _AudioColumn(),
            _SpeedColumn(),
            _RemainingColumn(),
            console=console,
            transient=True,
            get_time=get_time,
        )
        self.task = self.bar.add_task("", total=None, files="0/0", start=False)
        self.done_seconds = 0.0  # audio of the finished files
        self.lock = threading.Lock()  # expect() comes from another thread

    def begin(self, total: int) -> None:
        super().begin(total)
        self.bar.update(self.task, files=f"0/{total}")
        self.bar.start()
        self.bar.start_task(self.task)

    def expect(self, seconds: float) -> None:
        with self.lock:
            self.bar.update(self.task, total=max(seconds, self.done_seconds))

    def started(self, task: batch.Task) -> None:
        name = display_name(task.job.source)
        self.bar.update(self.task, description=name if len(name) <= 30 else "…" + name[-29:])

    def progress(self, seconds: float) -> None:
        self.bar.update(self.task, completed=self.done_seconds + seconds)

    def finished(self, outcome: Outcome) -> None:
        self.count += 1
        self.done_seconds += outcome.duration
        self.bar.update(self.task, completed=self.done_seconds, files=f"{self.count}/{self.total}")
        if outcome.status is Status.FAILED:
            _say(self.console, f"error: {outcome.message}", "red")
        elif self.verbose and outcome.status is Status.SKIPPED:
            _say(self.console, f"skipped: {outcome.message}")
        elif self.verbose:
            written = ", ".join(map(str, outcome.outputs)) or "stdout"
            _say(self.console, f"{display_name(outcome.source)} -> {written}")

    def end(self, summary: Summary) -> None:
        self.bar.stop()
        super().end(summary)


def make_reporter(console: Console, quiet: bool = False, verbose: bool = False) -> QuietReporter:
    """Errors only when ``quiet``; a live bar when ``console`` is a terminal; plain lines otherwise."""
    if quiet:
        return QuietReporter(console)
    if console.is_terminal:
        return RichReporter(console, verbose)
    return LogReporter(console, verbose)


@contextlib.contextmanager
def package_logging(console: Console, quiet: bool = False, verbosity: int = 0) -> Iterator[None]:
    """Route the package's log records to ``console`` (stderr) while the block runs.

    Levels: errors when ``quiet``, warnings by default, info with one ``-v``, debug with two.
    """
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False)
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger(_PACKAGE_LOGGER)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
