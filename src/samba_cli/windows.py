"""Long windows cut at silence, and the time map from window samples back to source time.

Mamba is linear in sequence length, so a window may be minutes long; by default it is 5 s (``window_seconds``), the
length the bundled model transcribes best, since it was trained on single utterances (docs/windowing.md). Each cut
between two windows is moved, within ``margin_seconds`` of its nominal place, to the quietest frame edge: the
lowest speech probability (averaged over ``speech_pad_ms`` on each side, compared in steps of 0.01), ties broken
by the lowest energy, then by the distance to the nominal place. With VAD on, a window's samples are only its
padded speech regions, concatenated; a :class:`TimeMap` turns positions in those samples back into source time.

The stream is consumed block by block; at most one window + margin (+ one input block) of samples is held.
See docs/windowing.md for the design and the measured memory.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from samba_cli.audio import SAMPLE_RATE
from samba_cli.options import WindowOptions
from samba_cli.vad import (
    FRAME_MS,
    FRAME_SAMPLES,
    HYSTERESIS,
    EnergyDetector,
    SpeechDetector,
    default_detector,
    frame_levels_db,
    speech_regions,
)

logger = logging.getLogger(__name__)

_PROB_STEP = 0.01  # speech probabilities closer than this count as a tie when choosing a cut
_SNAP = 1e-6  # a time within this many samples of a whole sample is that sample


@dataclass(frozen=True)
class TimeMap:
    """Window sample positions -> source positions, exact to the sample.

    A window's samples are ``lead`` samples of added silence, then the concatenation of source pieces. Piece k
    covers window samples [window_offset, window_offset + length) and source samples [source_offset,
    source_offset + length). Window offsets are contiguous from ``lead``; source offsets increase, with gaps
    where non-speech was dropped. A sample at a piece edge belongs to the piece that starts there; the lead-in
    maps to the start of the first piece; the window's end (``num_samples``) maps to the end of the last piece.
    Source times inside a dropped gap are never produced.
    """

    pieces: tuple[tuple[int, int, int], ...]  # (window_offset, source_offset, length) in samples, in order
    lead: int = 0  # samples of silence before the first piece (WindowOptions.lead_in_ms)

    def __post_init__(self) -> None:
        if not self.pieces:
            raise ValueError("a TimeMap needs at least one piece")
        expected, source_end = self.lead, 0
        for window_offset, source_offset, length in self.pieces:
            if window_offset != expected or length <= 0 or source_offset < source_end:
                raise ValueError(
                    f"pieces must be contiguous in the window and increasing in the source: {self.pieces}"
                )
            expected, source_end = window_offset + length, source_offset + length

    @property
    def num_samples(self) -> int:
        """Samples in the window."""
        window_offset, _, length = self.pieces[-1]
        return window_offset + length

    def to_source_sample(self, index: int) -> int:
        """Source sample of window sample ``index``, 0 <= index <= num_samples."""
        if not 0 <= index <= self.num_samples:
            raise ValueError(f"window sample {index} outside [0, {self.num_samples}]")
        window_offset, source_offset, _ = self._piece(max(index, self.lead))
        return source_offset + max(index, self.lead) - window_offset

    def to_source_seconds(self, seconds: float) -> float:
        """Source time (s) of window time ``seconds``; whole samples map exactly as :meth:`to_source_sample`."""
        position = seconds * SAMPLE_RATE
        nearest = round(position)
        if abs(position - nearest) <= _SNAP:
            position = nearest
        if not 0 <= position <= self.num_samples:
            raise ValueError(f"window time {seconds} s outside [0, {self.num_samples / SAMPLE_RATE}] s")
        position = max(position, self.lead)
        window_offset, source_offset, _ = self._piece(math.floor(position))
        return (source_offset + (position - window_offset)) / SAMPLE_RATE

    def _piece(self, index: int) -> tuple[int, int, int]:
        """The piece that contains window sample ``index`` (the last piece for index == num_samples)."""
        return self.pieces[bisect.bisect_right(self.pieces, (index, math.inf, math.inf)) - 1]


@dataclass(frozen=True)
class Window:
    index: int  # 0-based among the yielded windows (windows without speech are skipped)
    samples: np.ndarray  # (N,) float32 16 kHz; speech regions only when VAD is on
    time_map: TimeMap  # samples position -> source position
    source_start: float  # seconds: the cut that opens this window (windows tile the source from cut to cut)
    source_end: float  # seconds: the cut that closes it, or the end of the source


@dataclass(frozen=True)
class Gap:
    """A stretch of a live stream without speech (live windowing gives it where a window would be): the stream
    has been read up to ``source_end`` and nothing in it is to be transcribed."""

    source_start: float  # seconds
    source_end: float  # seconds


def iter_windows(
    blocks: Iterable[np.ndarray],
    options: WindowOptions = WindowOptions(),
    detector: SpeechDetector | None = None,
    live: bool = False,
) -> Iterator[Window | Gap]:
    """Cut a stream of 16 kHz mono blocks into long windows at quiet points.

    Args:
        blocks: (N_i,) float32 blocks of one stream, any sizes (for example :func:`samba_cli.audio.iter_audio`).
        options: window length, cut margin and VAD settings.
        detector: the speech detector; by default silero-vad (energy fallback) with VAD on, energy with VAD off.
            It is reset before use.
        live: cut without looking past the window length, so that no window waits for audio after it: a window
            is closed at the first pause (smoothed speech probability below the VAD's end threshold) once it
            is ``window_seconds - margin`` long, else at the quietest point of its last ``margin`` seconds once
            it is ``window_seconds`` long. Stretches without speech are given as :class:`Gap`.

    Yields:
        Windows in source order. With VAD on, a window without speech is not yielded (live: a Gap instead).
    """
    if detector is None:
        detector = default_detector() if options.vad else EnergyDetector()
    cutter = _Cutter(options, detector, live)
    for block in blocks:
        yield from cutter.push(np.asarray(block, dtype=np.float32).reshape(-1))
    yield from cutter.finish()


class _Queue:
    """A growable float32 FIFO: append at the tail, drop from the head, read a contiguous view."""

    def __init__(self, expected: int) -> None:
        self._data = np.empty(0, dtype=np.float32)
        self._expected = expected  # usual high-water mark: doubling stops here, so the capacity stays near it
        self._head = 0  # first valid element
        self._tail = 0  # one past the last valid element

    def __len__(self) -> int:
        return self._tail - self._head

    def view(self) -> np.ndarray:
        """(len,) the valid elements, valid until the next append."""
        return self._data[self._head : self._tail]

    def append(self, values: np.ndarray) -> None:
        if self._tail + values.size > self._data.size:
            size = len(self)
            if size + values.size > self._data.size:
                capacity = max(size + values.size, min(2 * self._data.size, self._expected))
                grown = np.empty(capacity, dtype=np.float32)
                grown[:size] = self.view()
                self._data = grown
            else:
                self._data[:size] = self.view()
            self._head, self._tail = 0, size
        self._data[self._tail : self._tail + values.size] = values
        self._tail += values.size

    def drop(self, count: int) -> None:
        self._head += count


class _Cutter:
    """The state of :func:`iter_windows`: the samples from the current window start, and their frame analysis."""

    def __init__(self, options: WindowOptions, detector: SpeechDetector, live: bool = False) -> None:
        self.options = options  # the window settings
        self.detector = detector  # speech probabilities for each new frame
        self.live = live  # cut without looking past the nominal window length (see iter_windows)
        self.window = max(1, round(options.window_seconds * SAMPLE_RATE / FRAME_SAMPLES))  # frames
        margin = round(options.margin * SAMPLE_RATE / FRAME_SAMPLES)
        self.margin = min(margin, self.window - 1)  # frames a cut may move either way
        self.smooth = max(1, round(options.speech_pad_ms / FRAME_MS))  # half-width of the cut score, frames
        # frames analysed before a cut is decided: the cut's range and the half-width of its score
        self.held = self.window + (0 if live else self.margin) + self.smooth
        self.pause = options.vad_threshold - HYSTERESIS  # live: a smoothed probability below this is a pause
        self.samples = _Queue(self.held * FRAME_SAMPLES)  # samples from the current window start
        self.probs = _Queue(self.held)  # (frames,) speech probability of each analysed frame
        self.levels = _Queue(self.held)  # (frames,) dBFS of each analysed frame
        self.start = 0  # source sample of the current window start
        self.analysed = 0  # samples from the window start already analysed; whole frames until finish()
        self.index = 0  # index of the next yielded window
        detector.reset()

    def push(self, block: np.ndarray) -> Iterator[Window]:
        """Add (N,) samples and yield every window that can now be cut."""
        self.samples.append(block)
        self._analyse(len(self.samples) - (len(self.samples) - self.analysed) % FRAME_SAMPLES)
        while True:
            frames = len(self.probs)
            if frames >= self.held:
                cut, _ = self._quietest(self.held - self.smooth)
            elif self.live and frames - self.smooth >= self.window - self.margin:
                cut, prob = self._quietest(frames - self.smooth)
                if prob >= self.pause:  # no pause yet: wait for more audio
                    return
            else:
                return
            yield from self._take(cut * FRAME_SAMPLES)

    def finish(self) -> Iterator[Window]:
        """Analyse the last partial frame and yield the remaining windows."""
        self._analyse(len(self.samples))
        while len(self.probs) > self.held - self.smooth:
            yield from self._take(self._quietest(self.held - self.smooth)[0] * FRAME_SAMPLES)
        if len(self.samples):
            yield from self._take(len(self.samples))

    def _analyse(self, end: int) -> None:
        """Run the detector and the level meter on samples [analysed, end) of the window."""
        if end > self.analysed:
            fresh = self.samples.view()[self.analysed : end]
            self.probs.append(self.detector.probabilities(fresh))
            self.levels.append(frame_levels_db(fresh))
            self.analysed = end

    def _quietest(self, last: int) -> tuple[int, float]:
        """The frame edge in [window - margin, last] with the lowest (smoothed probability, energy, distance),
        and its smoothed speech probability."""
        probs, levels = self.probs.view(), self.levels.view()
        edges = np.arange(self.window - self.margin, last + 1)
        lo = np.clip(edges - self.smooth, 0, probs.size)
        hi = np.clip(edges + self.smooth, 0, probs.size)
        span = hi - lo
        prob_sums = np.concatenate([[0.0], np.cumsum(probs, dtype=np.float64)])
        level_sums = np.concatenate([[0.0], np.cumsum(levels, dtype=np.float64)])
        prob = np.floor((prob_sums[hi] - prob_sums[lo]) / span / _PROB_STEP)
        level = (level_sums[hi] - level_sums[lo]) / span
        best = np.lexsort((np.abs(edges - self.window), level, prob))[0]
        return int(edges[best]), float(prob[best] * _PROB_STEP)

    def _take(self, cut: int) -> Iterator[Window]:
        """Yield the window made of samples [0, cut) (if it has speech) and drop them."""
        frames = -(-cut // FRAME_SAMPLES)
        samples = self.samples.view()[:cut]
        if self.options.vad:
            regions = speech_regions(
                self.probs.view()[:frames],
                self.options.vad_threshold,
                self.options.min_speech_ms,
                self.options.min_silence_ms,
                self.options.speech_pad_ms,
                num_samples=cut,
            )
        else:
            regions = [(0, cut)]
        source_start, source_end = self.start / SAMPLE_RATE, (self.start + cut) / SAMPLE_RATE
        if regions:
            lead = (
                round(self.options.lead_in_ms * SAMPLE_RATE / 1000) if self.start + regions[0][0] == 0 else 0
            )
            offsets = np.cumsum([lead] + [end - begin for begin, end in regions]).tolist()
            pieces = tuple(
                (offset, self.start + begin, end - begin)
                for offset, (begin, end) in zip(offsets, regions, strict=False)
            )
            logger.debug(
                "window %d: %.2f-%.2f s, %.2f s kept in %d pieces",
                self.index,
                source_start,
                source_end,
                (offsets[-1] - lead) / SAMPLE_RATE,
                len(pieces),
            )
            yield Window(
                index=self.index,
                samples=np.concatenate(
                    [np.zeros(lead, np.float32)] + [samples[begin:end] for begin, end in regions]
                ),
                time_map=TimeMap(pieces, lead),
                source_start=source_start,
                source_end=source_end,
            )
            self.index += 1
        else:
            logger.debug("window %.2f-%.2f s: no speech, skipped", source_start, source_end)
            if self.live:
                yield Gap(source_start, source_end)
        self.samples.drop(cut)
        self.probs.drop(frames)
        self.levels.drop(frames)
        self.start += cut
        self.analysed -= cut
