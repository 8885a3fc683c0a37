"""Split a window's encoder frames into utterance segments at pauses, using the CTC blank posteriors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from samba_cli.options import SegmentOptions


@dataclass(frozen=True)
class FrameSpan:
    start: int  # first encoder frame of the segment (inclusive)
    end: int  # one past the last frame
    no_speech_prob: float  # mean blank probability over the span

    @property
    def length(self) -> int:
        return self.end - self.start


def split_segments(
    blank_prob: torch.Tensor, frame_seconds: float, options: SegmentOptions
) -> list[FrameSpan]:
    """blank_prob: (S,) per-frame CTC blank probability -> speech segments, in order, at most max_seconds long.

    Speech is every frame not inside a pause (a long enough blank run). Speech runs closer than a pause are
    merged; runs longer than max_seconds are cut at their most blank-like frame, recursively.
    """
    blank = blank_prob.float().cpu()
    n = blank.shape[0]
    min_pause = max(1, round(options.min_pause_seconds / frame_seconds))
    max_len = max(1, int(options.max_segment_seconds / frame_seconds))
    silent = (blank > options.blank_threshold).tolist()

    # Pauses: runs of silent frames of at least min_pause frames. Speech: what lies between them.
    spans: list[tuple[int, int]] = []
    start = None
    run = 0
    for i, s in enumerate(silent + [True] * min_pause):
        if not s:
            if start is None:
                start = i
            run = 0
            continue
        run += 1
        if start is not None and run == min_pause:
            spans.append((start, min(n, i - min_pause + 1)))
            start = None

    # Greedily pack neighbouring speech runs into segments of at most max_len frames (the gap between them
    # becomes part of the segment), then cut anything still too long.
    packed: list[tuple[int, int]] = []
    for s, e in spans:
        if packed and e - packed[-1][0] <= max_len:
            packed[-1] = (packed[-1][0], e)
        else:
            packed.append((s, e))
    result = []
    min_speech = max(1, round(options.min_speech_seconds / frame_seconds))
    for s, e in packed:
        for a, b in _cut_long(blank, s, e, max_len):
            speech_frames = sum(1 for i in range(a, b) if not silent[i])
            if speech_frames >= min_speech:
                result.append(FrameSpan(a, b, float(blank[a:b].mean())))
    return result


def _cut_long(blank: torch.Tensor, start: int, end: int, max_len: int) -> list[tuple[int, int]]:
    if end - start <= max_len:
        return [(start, end)]
    # Cut at the most blank-like frame in the middle half, so both halves stay reasonably long.
    lo = start + (end - start) // 4
    hi = end - (end - start) // 4
    cut = lo + int(torch.argmax(blank[lo:hi]))
    return _cut_long(blank, start, cut, max_len) + _cut_long(blank, cut, end, max_len)


def split_at_gaps(spans: list[tuple[float, float]], min_gap: float) -> list[tuple[int, int]]:
    """Timed items (start, end), in order -> index ranges [a, b) of the runs separated by gaps >= min_gap."""
    runs: list[tuple[int, int]] = []
    for k, (start, _) in enumerate(spans):
        if not runs or start - spans[k - 1][1] >= min_gap:
            runs.append((k, k + 1))
        else:
            runs[-1] = (runs[-1][0], k + 1)
    return runs
