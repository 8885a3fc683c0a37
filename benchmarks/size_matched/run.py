"""``run_bench``: every case of the options, each in a fresh child process, within an optional time budget."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cases import Case, plan
from .child import run_case, run_case_in_child
from .options import BenchOptions
from .report import check_targets
from .results import (
    BenchResults,
    EncoderResult,
    EndToEndResult,
    ModelInfo,
    SkippedCase,
    StepResult,
    environment,
)

logger = logging.getLogger(__name__)


@dataclass
class _Budget:
    """Predicts a case's wall time from the same model's last end-to-end case: audio / RTFx + start-up."""

    total: float | None
    start: float = field(default_factory=time.perf_counter)
    last: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (rtfx, overhead s)

    def left(self) -> float | None:
        return None if self.total is None else self.total - (time.perf_counter() - self.start)

    def predict(self, case: Case) -> float | None:
        if case.kind != "end_to_end" or (case.model, case.preset) not in self.last:
            return None
        rtfx, overhead = self.last[(case.model, case.preset)]
        return case.audio_seconds / rtfx + overhead

    def record(self, case: Case, result: EndToEndResult, child_seconds: float) -> None:
        self.last[(case.model, case.preset)] = (result.rtfx, max(0.0, child_seconds - result.wall_seconds))


def _skip_reason(case: Case, budget: _Budget) -> str | None:
    if case.model == "whisper" and importlib.util.find_spec("transformers") is None:
        return "transformers is not installed (pip install transformers)"
    predicted, left = budget.predict(case), budget.left()
    if left is not None and left <= 0:
        return "the time budget is spent"
    if predicted is not None and left is not None and predicted > left:
        return f"predicted {predicted:.0f} s from the shorter case, but only {left:.0f} s of the budget left"
    return None


def run_bench(
    options: BenchOptions,
    command: str = "",
    isolate: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchResults:
    """Run every case of ``options``. ``isolate``: each case in a fresh child process (needed for peak memory).

    A case that fails or is skipped (budget, transformers missing) is listed in ``skipped`` with the reason.
    """
    say = progress or logger.info
    start = time.perf_counter()
    env = environment(options, command)
    budget = _Budget(options.budget_seconds)
    models: dict[tuple[str, str], ModelInfo] = {}
    e2e, encoder, step, skipped = [], [], [], []
    for case in plan(options):
        reason = _skip_reason(case, budget)
        if reason is None:
            say(f"run  {case.label}")
            case_start = time.perf_counter()
            left = budget.left()
            try:
                timeout = None if left is None else max(60.0, left)
                data = run_case_in_child(case, options, timeout) if isolate else run_case(case, options)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                reason = f"failed: {exc}"
        if reason is not None:
            say(f"skip {case.label}: {reason}")
            skipped.append(SkippedCase(case.kind, case.model, case.preset, case.audio_seconds, reason))
            continue
        models[(case.model, case.preset)] = ModelInfo(**data["model"])
        if case.kind == "end_to_end":
            e2e.append(EndToEndResult(**data["end_to_end"]))
            budget.record(case, e2e[-1], time.perf_counter() - case_start)
            say(f"     {e2e[-1].rtfx:.1f}x real time, {e2e[-1].wall_seconds:.1f} s")
        else:
            encoder.extend(EncoderResult(**r) for r in data["encoder"])
            step.extend(StepResult(**r) for r in data["step"])
    return BenchResults(
        environment=env,
        options=options,
        models=tuple(models.values()),
        end_to_end=tuple(e2e),
        encoder=tuple(encoder),
        step=tuple(step),
        skipped=tuple(skipped),
        targets=tuple(check_targets(env, e2e)),
        total_seconds=time.perf_counter() - start,
    )
