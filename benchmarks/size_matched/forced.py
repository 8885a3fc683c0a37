"""What both runners share: the synchronised clocks, the runner interface and forced token picking."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from .options import BenchOptions
from .results import StepResult


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StageClock:
    """Seconds per named stage; the device is synchronised at both ends of a stage."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn``, the device synchronised around each."""
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class DecodeCounts:
    windows: int  # samba windows or whisper chunks
    segments: int  # decoder rows
    tokens: int  # forced tokens (sum of row budgets)


class Runner(Protocol):
    """One model under forced decoding: end to end on a stream of 16 kHz blocks, its encoder, its decoder step."""

    options: BenchOptions
    param: torch.Tensor  # a parameter of the model: its device and dtype

    def prepare(self) -> None:
        """Work that must not fall in a timed run (CUDA graph capture)."""

    def run(self, blocks: Iterable[np.ndarray], clock: StageClock) -> DecodeCounts: ...

    def encoder_call(self, seconds: float) -> tuple[Callable[[], object], int]:
        """A call that encodes random features of ``seconds`` of audio, and its number of windows."""
        ...

    def time_steps(self, preset: str) -> list[StepResult]:
        """ms per forced decoder step at each of ``options.step_batches``."""
        ...


def suppress_mask(vocab: int, ids: Iterable[int], device: torch.device) -> torch.Tensor:
    """(vocab,) True at the token ids that forced decoding never picks (eos and the other specials)."""
    mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    mask[list(ids)] = True
    return mask


def pick(logits: torch.Tensor, suppress: torch.Tensor) -> torch.Tensor:
    """logits (B, V) -> (B,) greedy tokens, never one of the ``suppress`` mask's ids."""
    return logits.masked_fill(suppress, -math.inf).argmax(-1)


def rows_to_host(tokens: torch.Tensor, budgets: list[int]) -> int:
    """Copy forced tokens (B, steps) to the host, as a search returning text would; the tokens counted."""
    tokens.cpu()
    return sum(budgets)
