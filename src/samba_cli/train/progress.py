"""Progress: a rich bar on a terminal, plain timestamped lines otherwise (log files, pipes)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def format_metrics(metrics: dict) -> str:
    parts = []
    for key, value in metrics.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


class TrainReporter:
    """Shows training progress on the main rank; silent on the others."""

    def __init__(self, total_steps: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self.bar: Progress | None = None
        if enabled and sys.stdout.isatty():
            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(),
            )
            self.task = self.bar.add_task("train", total=total_steps, status="")
            self.bar.start()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.log(text)
        else:
            print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def update(self, step: int, status: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, status=status)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
