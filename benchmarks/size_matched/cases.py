"""The cases of a run, and the generated speech-like audio they transcribe."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from samba_cli.features import SAMPLE_RATE

from .options import BenchOptions


@dataclass(frozen=True)
class Case:
    kind: str  # end_to_end or micro (encoder and step cases of one model)
    model: str  # samba or whisper
    preset: str
    audio_seconds: float = 0.0  # end_to_end only

    @property
    def label(self) -> str:
        length = f" {self.audio_seconds / 60:g} min" if self.kind == "end_to_end" else ""
        return f"{self.kind} {self.model} {self.preset}{length}"


def plan(options: BenchOptions) -> list[Case]:
    """Micro cases, then end-to-end cases shortest first, samba before whisper at each length.

    A time budget then cuts the longest whisper cases first.
    """
    micro = [Case("micro", m, p) for p in options.presets for m in options.models]
    e2e = [
        Case("end_to_end", m, p, 60.0 * minutes)
        for minutes in sorted(options.minutes)
        for m in options.models
        for p in options.presets
    ]
    return micro + e2e


@functools.lru_cache(maxsize=2)
def _utterance_bank(seed: int, count: int = 24) -> tuple[np.ndarray, ...]:
    """``count`` voiced utterances of 1.5-8 s: a gliding harmonic source, formant weights, 4 Hz syllables."""
    rng = np.random.default_rng(seed)
    bank = []
    for _ in range(count):
        n = int(rng.uniform(1.5, 8.0) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.uniform(90, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        formants = rng.uniform([400, 1100, 2300], [900, 2000, 3200])
        voice = np.zeros(n)
        for k in range(1, 16):
            weight = sum(np.exp(-(((k * f0.mean() - f) / 300) ** 2)) for f in formants) / k + 0.02 / k
            voice += weight * np.sin(k * phase)
        syllables = (0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi))) ** 1.5
        signal = voice * syllables + 0.02 * rng.standard_normal(n)
        bank.append((0.3 * signal / np.abs(signal).max()).astype(np.float32))
    return tuple(bank)


def synthetic_speech(seconds: float, seed: int = 0, block_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Speech-like 16 kHz audio in (block,) float32 blocks: utterances from a small bank, 0.2-1.5 s pauses.

    Generation is a copy per piece, so it costs little against the models; at most one piece and one block are
    held besides the bank (~2 M samples).
    """
    rng = np.random.default_rng(seed + 1)
    bank = _utterance_bank(seed)
    total, block = round(seconds * SAMPLE_RATE), max(1, round(block_seconds * SAMPLE_RATE))
    buffer = np.zeros(0, dtype=np.float32)
    emitted = 0
    while emitted < total:
        utterance = bank[rng.integers(len(bank))] * np.float32(rng.uniform(0.4, 1.0))
        pause = (1e-3 * rng.standard_normal(int(rng.uniform(0.2, 1.5) * SAMPLE_RATE))).astype(np.float32)
        buffer = np.concatenate([buffer, utterance, pause])
        while buffer.size >= block and emitted < total:
            size = min(block, total - emitted)
            yield buffer[:size]
            buffer, emitted = buffer[size:], emitted + size
