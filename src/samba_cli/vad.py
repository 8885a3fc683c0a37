"""Voice activity: one speech probability per 32 ms frame, and speech regions from those probabilities.

Two detectors share the :class:`SpeechDetector` interface:

* :class:`SileroDetector` runs silero-vad. The network is a per-frame front end (STFT + convolutions) followed by
  an LSTM cell and a 1x1 convolution head. The front end has no state, so it runs on all the frames of a block
  at once; the LSTM carries the state from block to block. The result equals silero's own frame-by-frame
  ``model(chunk, 16000)`` loop (tested), about five times faster.
* :class:`EnergyDetector` maps frame energy against an adaptive noise floor to a probability. It is the fallback
  when silero-vad cannot be imported (see :func:`default_detector`).

Both are streaming: feed consecutive pieces of one stream whose lengths are multiples of 512 samples (only the
last piece may be shorter; it is zero-padded), and call ``reset()`` before the next stream.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from samba_cli.audio import SAMPLE_RATE

logger = logging.getLogger(__name__)

FRAME_SAMPLES = 512  # samples per VAD frame at 16 kHz (silero's fixed chunk)
FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE  # 32.0 ms per frame

_SILERO_CONTEXT = 64  # samples of the previous frame that silero prepends to each frame
_SILERO_HIDDEN = 128  # LSTM width of the silero 16 kHz model
_FRONT_END_BATCH = 4096  # frames per front-end call, bounds the activation memory
HYSTERESIS = 0.15  # speech ends below threshold - this (silero's own rule)
_SILENCE_DB = -100.0  # level of digital silence, dBFS (keeps log10 finite)

# EnergyDetector constants: speech is energy well above a slowly rising noise floor.
_FLOOR_RISE_DB_PER_FRAME = 0.5 * FRAME_MS / 1000  # the floor follows a louder background at 0.5 dB/s
_SPEECH_ABOVE_FLOOR_DB = 15.0  # speech threshold above the noise floor
_THRESHOLD_RANGE_DB = (-55.0, -35.0)  # the speech threshold is clamped to this range, dBFS
_SLOPE_DB = 3.0  # dB for the probability to go from 0.5 to 0.73


@runtime_checkable
class SpeechDetector(Protocol):
    """A streaming voice-activity detector over 16 kHz mono audio."""

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probabilities of the next piece of the stream.

        Args:
            samples: (N,) float32; N a multiple of 512 except for the last piece of a stream.

        Returns:
            (ceil(N / 512),) float32 in [0, 1], one per 32 ms frame.
        """
        ...

    def reset(self) -> None:
        """Forget the stream so far; the next call starts a new stream."""
        ...


def frame_levels_db(samples: np.ndarray) -> np.ndarray:
    """Mean power of each 512-sample frame in dBFS. (N,) -> (ceil(N / 512),) float32; a short last frame is
    averaged over its own samples."""
    samples = np.asarray(samples, dtype=np.float32)
    frames = -(-samples.size // FRAME_SAMPLES)
    padded = np.zeros(frames * FRAME_SAMPLES, dtype=np.float64)
    padded[: samples.size] = samples
    power = np.square(padded).reshape(frames, FRAME_SAMPLES).sum(axis=1)
    counts = np.full(frames, FRAME_SAMPLES, dtype=np.float64)
    if frames and samples.size % FRAME_SAMPLES:
        counts[-1] = samples.size % FRAME_SAMPLES
    return (10 * np.log10(power / np.maximum(counts, 1) + 10 ** (_SILENCE_DB / 10))).astype(np.float32)


_TensorFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _SileroParts:
    front_end: _TensorFn  # (F, 64 + 512) samples -> (F, 128, 1) features; no state, so all frames at once
    lstm: torch.nn.LSTM  # the model's LSTM cell as a sequence LSTM: (1, F, 128) -> (1, F, 128)
    head: torch.jit.ScriptModule  # (F, 128, 1) hidden -> (F, 1, 1) probabilities


@functools.lru_cache(maxsize=1)
def _silero() -> _SileroParts:
    """Load silero-vad once per process. Raises ImportError, or AttributeError for an unknown model layout."""
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad  # its import sets torch's thread count to 1 for everyone
    finally:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():
        # torch.jit.load (a FutureWarning in newer torch), importlib.resources.path: silero's, not the user's
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        model = load_silero_vad()._model
    cell = model.decoder.rnn
    lstm = torch.nn.LSTM(_SILERO_HIDDEN, _SILERO_HIDDEN, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, f"{name}_l0").copy_(getattr(cell, name))
    lstm.eval()

    def front_end(frames: torch.Tensor) -> torch.Tensor:
        return model.encoder(model.run_extractors(frames))

    return _SileroParts(front_end=front_end, lstm=lstm, head=model.decoder.decoder)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded for a moment, then restore the process-wide thread count.

    The LSTM step is far too small to gain from threads, and on a loaded machine the per-step thread
    synchronisation made a 5000-frame sequence 25x slower (0.86 s against 0.034 s). The thread count is
    process-wide: run the detector in the thread that runs the model, not beside it.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SileroDetector:
    """silero-vad speech probabilities, streamed; the model is shared by all instances, the state is not."""

    def __init__(self) -> None:
        self._parts = _silero()
        self.reset()

    def reset(self) -> None:
        self._context = torch.zeros(_SILERO_CONTEXT)  # (64,) last samples of the previous frame
        self._state = (torch.zeros(1, 1, _SILERO_HIDDEN), torch.zeros(1, 1, _SILERO_HIDDEN))  # LSTM (h, c)

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        with _one_torch_thread(), torch.inference_mode():
            return self._probabilities(samples)

    def _probabilities(self, samples: np.ndarray) -> np.ndarray:
        samples = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        frames = -(-samples.numel() // FRAME_SAMPLES)
        if frames == 0:
            return np.zeros(0, dtype=np.float32)
        padded = torch.zeros(_SILERO_CONTEXT + frames * FRAME_SAMPLES)
        padded[:_SILERO_CONTEXT] = self._context
        padded[_SILERO_CONTEXT : _SILERO_CONTEXT + samples.numel()] = samples
        self._context = padded[-_SILERO_CONTEXT:].clone()
        windows = padded.unfold(0, _SILERO_CONTEXT + FRAME_SAMPLES, FRAME_SAMPLES)  # (F, 576)
        features = torch.cat(
            [
                self._parts.front_end(windows[start : start + _FRONT_END_BATCH])
                for start in range(0, frames, _FRONT_END_BATCH)
            ]
        ).squeeze(-1)  # (F, 128)
        hidden, self._state = self._parts.lstm(features[None], self._state)  # (1, F, 128)
        return self._parts.head(hidden[0, :, :, None]).reshape(frames).numpy()


class EnergyDetector:
    """Energy-based speech probabilities: frame level against an adaptive noise floor.

    The floor drops at once to a quieter frame and rises at 0.5 dB/s; the speech threshold is the floor + 15 dB,
    clamped to [-55, -35] dBFS; the probability is a logistic of (level - threshold) / 3 dB.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._floor = math.inf  # noise floor after the last frame, dBFS; +inf before the first frame

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        levels = frame_levels_db(samples).astype(np.float64)  # (F,)
        if levels.size == 0:
            return np.zeros(0, dtype=np.float32)
        # floor[t] = min(floor[t-1] + rise, level[t]) = rise * t + cummin(level[k] - rise * k), vectorised.
        ramp = _FLOOR_RISE_DB_PER_FRAME * np.arange(levels.size)
        start = min(self._floor + _FLOOR_RISE_DB_PER_FRAME, levels[0])
        floor = ramp + np.minimum.accumulate(np.concatenate([[start], levels[1:] - ramp[1:]]))
        self._floor = float(floor[-1])
        threshold = np.clip(floor + _SPEECH_ABOVE_FLOOR_DB, *_THRESHOLD_RANGE_DB)
        return (1 / (1 + np.exp(-(levels - threshold) / _SLOPE_DB))).astype(np.float32)


def default_detector() -> SpeechDetector:
    """A new :class:`SileroDetector`, or an :class:`EnergyDetector` (with a warning) if silero-vad won't load."""
    try:
        return SileroDetector()
    except (ImportError, AttributeError, RuntimeError) as error:
        logger.warning("silero-vad unavailable (%s); falling back to energy-based voice activity", error)
        return EnergyDetector()


def speech_regions(
    probs: np.ndarray,
    threshold: float,
    min_speech_ms: int,
    min_silence_ms: int,
    pad_ms: int,
    *,
    num_samples: int | None = None,
) -> list[tuple[int, int]]:
    """Speech regions, as sample ranges, from per-frame speech probabilities.

    Speech starts at a frame with prob >= ``threshold`` and ends at a frame with prob < ``threshold - 0.15``
    (hysteresis). Regions closer than ``min_silence_ms`` are merged, regions shorter than ``min_speech_ms`` are
    dropped, the rest are padded by ``pad_ms`` on both sides and overlapping ones merged.

    Args:
        probs: (F,) probabilities of consecutive 512-sample frames.
        num_samples: the length of the audio the frames cover (default F * 512); regions are clipped to it.

    Returns:
        Sorted, disjoint, non-adjacent ``(start, end)`` sample ranges within [0, num_samples), end exclusive.
    """
    ms = SAMPLE_RATE // 1000
    total = len(probs) * FRAME_SAMPLES if num_samples is None else num_samples
    off = max(threshold - HYSTERESIS, 0.01)
    raw: list[tuple[int, int]] = []
    start: int | None = None
    for frame, prob in enumerate(np.asarray(probs, dtype=np.float64).tolist()):
        if start is None and prob >= threshold:
            start = frame
        elif start is not None and prob < off:
            raw.append((start, frame))
            start = None
    if start is not None:
        raw.append((start, len(probs)))
    merged: list[tuple[int, int]] = []
    for begin, end in raw:
        if merged and (begin - merged[-1][1]) * FRAME_SAMPLES < min_silence_ms * ms:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    pad = pad_ms * ms
    regions: list[tuple[int, int]] = []
    for begin, end in merged:
        if (end - begin) * FRAME_SAMPLES < min_speech_ms * ms:
            continue
        lo, hi = max(begin * FRAME_SAMPLES - pad, 0), min(end * FRAME_SAMPLES + pad, total)
        if lo >= hi:
            continue
        if regions and lo <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(hi, regions[-1][1]))
        else:
            regions.append((lo, hi))
    return regions
