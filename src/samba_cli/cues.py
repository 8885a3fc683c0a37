"""Subtitle cues built from timed words: cue splitting, line wrapping and cue timing.

Each segment is cut into cues on its own: cues never cross segment boundaries. Segment boundaries already
fall at windows cut at silence, so a cue spanning two of them would mostly join text across a pause; keeping
them apart also lets segments with and without word timestamps mix in one transcript.

Inside a segment the words are first split at pauses of at least ``pause_seconds`` (hard breaks), then each
run of words is split into cues by dynamic programming over the break positions. A cue is feasible when its
words wrap into at most ``max_line_count`` lines of at most ``max_line_width`` characters and it lasts at most
``max_duration``; among feasible splits the one with the fewest cues wins, preferring breaks after sentence
punctuation, then after clause punctuation, then at longer gaps, and cues of even fill. A single word is
always a feasible cue, whatever its length or duration, so every input can be split. Lines inside a cue are
balanced the same way. All timing is done in whole milliseconds, so the rounding of the writers cannot make
two cues overlap or a cue empty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from samba_cli.results import Segment

SENTENCE_END = (".", "?", "!", "…")  # a word ending with one of these ends a sentence
CLAUSE_END = (",", ";", ":")  # a word ending with one of these ends a clause
_CLOSERS = "\"')]}»”’"  # closing quotes and brackets, skipped when looking for punctuation at a word's end

_CUE_COST = 1.0  # cost of every cue: fewer cues win unless a much better break is found
_FILL_WEIGHT = 0.5  # weight of (1 - fill)^2, fill being a cue's characters over its capacity
_SENTENCE_PENALTY = 0.0  # break after . ? ! …
_CLAUSE_PENALTY = 0.4  # break after , ; :
_WORD_PENALTY = 1.0  # break between two words with no punctuation
_PAUSE_BONUS = 0.5  # subtracted from a break penalty in proportion to the gap (up to pause_seconds)
_LINE_BREAK_WEIGHT = 0.2  # break penalties count this much when choosing where lines break


@dataclass(frozen=True)
class CueOptions:
    max_line_width: int = 42  # characters per line; a longer single word gets its own line and exceeds it
    max_line_count: int = 2  # lines per cue
    max_duration: float = 7.0  # seconds per cue, unless the cue is a single word that lasts longer
    min_duration: float = 0.5  # seconds; shorter cues are extended into the free time after them, if any
    min_gap: float = 0.04  # seconds kept between consecutive cues, unless the earlier one would vanish
    pause_seconds: float = 0.8  # a pause this long between words starts a new cue

    def __post_init__(self) -> None:
        checks = (
            (self.max_line_width >= 1, "max_line_width must be at least 1"),
            (self.max_line_count >= 1, "max_line_count must be at least 1"),
            (self.max_duration > 0, "max_duration must be positive"),
            (0 <= self.min_duration <= self.max_duration, "min_duration must be in [0, max_duration]"),
            (self.min_gap >= 0, "min_gap must not be negative"),
            (self.pause_seconds > 0, "pause_seconds must be positive"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message}; got {self}")


@dataclass(frozen=True)
class Cue:
    start: float  # seconds, a whole number of milliseconds
    end: float  # seconds, > start and <= the next cue's start
    lines: tuple[str, ...]  # the displayed lines, top to bottom

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Token:
    text: str  # one word, inner whitespace collapsed to single spaces
    start: int  # milliseconds
    end: int  # milliseconds, >= start


def to_milliseconds(seconds: float) -> int:
    """Seconds to the nearest whole millisecond, halves up: the one rounding rule of every output."""
    return math.floor(seconds * 1000 + 0.5)


def build_cues(
    segments: Iterable[Segment], options: CueOptions = CueOptions(), duration: float | None = None
) -> list[Cue]:
    """Subtitle cues for the segments, sorted, non-overlapping, each with end > start.

    ``duration`` (seconds of the source, when known) is the latest time a cue may end. A word of punctuation
    alone joins the word before it (or after it), so no cue is punctuation only.
    """
    timed = [cue for segment in segments for cue in _timed(segment, options)]
    return _retime(timed, options, None if duration is None else to_milliseconds(duration))


class CueStream:
    """:func:`build_cues` for segments that come one after the other (a live transcript): each cue is given as
    soon as no later segment can change it, and the cues given in the end are exactly ``build_cues`` of all the
    segments with the source's duration.

    A cue's timing depends on the next cue only (overlaps, ``min_gap``, a short cue's extension into the free
    time after it). So a cue is final once the next one exists, and the last one once the stream has been
    transcribed far enough past its end (``until``) that no later cue could reach it: no later segment starts
    before ``until``."""

    def __init__(self, options: CueOptions = CueOptions()) -> None:
        self.options = options
        self.timed: list[tuple[int, int, tuple[str, ...]]] = []  # every segment's cues so far, untimed
        self.given = 0  # cues given so far

    def add(self, segments: Iterable[Segment]) -> None:
        for segment in segments:
            self.timed.extend(_timed(segment, self.options))

    def take(self, until: float | None = None, duration: float | None = None) -> list[Cue]:
        """The cues that have become final, in order: those with a next cue, and the last one when ``until``
        (seconds; no later segment starts before it) is past its end by ``min_gap``; ``until`` None: the stream
        has ended (``duration``: the source's seconds; 0 or None: unknown), every cue is final."""
        ended = until is None
        cues = _retime(
            list(self.timed), self.options, to_milliseconds(duration) if ended and duration else None
        )
        ready = len(cues)
        if not ended and cues:
            gap = to_milliseconds(self.options.min_gap)
            if to_milliseconds(until) < to_milliseconds(cues[-1].end) + gap:
                ready -= 1
        out = cues[self.given : ready]
        self.given = max(self.given, ready)
        return out


def _timed(segment: Segment, options: CueOptions) -> list[tuple[int, int, tuple[str, ...]]]:
    """One segment's cues before retiming: (start ms, end ms, lines), in order."""
    pause = to_milliseconds(options.pause_seconds)
    return [
        (cue[0].start, max(t.end for t in cue), _wrap(cue, options, pause))
        for run in _split_at_pauses(_joined(_tokens(segment)), pause)
        for cue in _split_run(run, options, pause)
    ]


def _spells(text: str) -> bool:
    """True when the text has a letter or a digit (is more than punctuation)."""
    return any(c.isalnum() for c in text)


def _joined(tokens: list[_Token]) -> list[_Token]:
    """Punctuation-only words attached to the word before them (the first ones to the word after them), keeping
    that word's times; a segment of punctuation only has no words."""
    out: list[_Token] = []
    leading = ""
    for token in tokens:
        if _spells(token.text):
            out.append(_Token(f"{leading} {token.text}" if leading else token.text, token.start, token.end))
            leading = ""
        elif out:
            out[-1] = _Token(f"{out[-1].text} {token.text}", out[-1].start, out[-1].end)
        else:
            leading = f"{leading} {token.text}" if leading else token.text
    return out


def _tokens(segment: Segment) -> list[_Token]:
    """The segment's words in milliseconds; without word timestamps, words timed by their character counts."""
    if segment.words:
        tokens = []
        for word in segment.words:
            text = " ".join(word.text.split())
            start = to_milliseconds(word.start)
            if text:
                tokens.append(_Token(text, start, max(start, to_milliseconds(word.end))))
        return tokens
    texts = segment.text.split()
    start = to_milliseconds(segment.start)
    span = max(to_milliseconds(segment.end) - start, 0)
    total = len(" ".join(texts))
    tokens, done = [], 0
    for index, text in enumerate(texts):
        # each word owns the space after it, so the words tile the segment without gaps
        size = len(text) + (index + 1 < len(texts))
        tokens.append(_Token(text, start + span * done // total, start + span * (done + size) // total))
        done += size
    return tokens


def _split_at_pauses(tokens: list[_Token], pause: int) -> list[list[_Token]]:
    runs: list[list[_Token]] = []
    for token in tokens:
        if runs and token.start - runs[-1][-1].end < pause:
            runs[-1].append(token)
        else:
            runs.append([token])
    return runs


def _break_penalty(before: _Token, after: _Token, pause: int) -> float:
    """How bad a cue or line break between two words is: 0 after a sentence, lower at longer gaps."""
    word = before.text.rstrip(_CLOSERS)
    if word.endswith(SENTENCE_END):
        penalty = _SENTENCE_PENALTY
    elif word.endswith(CLAUSE_END):
        penalty = _CLAUSE_PENALTY
    else:
        penalty = _WORD_PENALTY
    gap = min(max(after.start - before.end, 0) / pause, 1.0)
    return max(penalty - _PAUSE_BONUS * gap, 0.0)


def _place(lines: int, last: int, word: int, width: int) -> tuple[int, int]:
    """Greedy wrapping: (line count, last line length) after appending a word of `word` characters.

    An overlong word never shares a line: it does not fit after anything, and nothing fits after it.
    Greedy wrapping gives the fewest lines, so it decides whether words fit in a cue.
    """
    if lines and last + 1 + word <= width:
        return lines, last + 1 + word
    return lines + 1, word


def _split_run(tokens: list[_Token], options: CueOptions, pause: int) -> list[list[_Token]]:
    """Split words with no long pause between them into cues, at the cheapest set of breaks."""
    width, max_lines = options.max_line_width, options.max_line_count
    longest = to_milliseconds(options.max_duration)
    n = len(tokens)
    best = [0.0] + [math.inf] * n  # best[j]: cost of the first j words as whole cues
    back = [0] * (n + 1)  # back[j]: where the last cue of that best split starts
    for i in range(n):
        lines, last, chars, end = 0, 0, -1, tokens[i].end
        for j in range(i, n):
            lines, last = _place(lines, last, len(tokens[j].text), width)
            chars += 1 + len(tokens[j].text)
            end = max(end, tokens[j].end)
            if j > i and (lines > max_lines or end - tokens[i].start > longest):
                break
            fill = min(chars / (width * max_lines), 1.0)
            cost = best[i] + _CUE_COST + _FILL_WEIGHT * (1.0 - fill) ** 2
            if j + 1 < n:
                cost += _break_penalty(tokens[j], tokens[j + 1], pause)
            if cost < best[j + 1]:
                best[j + 1], back[j + 1] = cost, i
    cues, j = [], n
    while j > 0:
        cues.append(tokens[back[j] : j])
        j = back[j]
    return cues[::-1]


def _wrap(tokens: list[_Token], options: CueOptions, pause: int) -> tuple[str, ...]:
    """The cue's words in the fewest lines that fit, balanced, breaking at punctuation where it helps."""
    width, n = options.max_line_width, len(tokens)
    count, last = 0, 0
    for token in tokens:
        count, last = _place(count, last, len(token.text), width)
    # cost[k][j]: best cost of the first j words in k lines, a line costing (length / width)^2
    cost = [[math.inf] * (n + 1) for _ in range(count + 1)]
    back = [[0] * (n + 1) for _ in range(count + 1)]
    cost[0][0] = 0.0
    for k in range(1, count + 1):
        for j in range(1, n + 1):
            penalty = _LINE_BREAK_WEIGHT * _break_penalty(tokens[j - 1], tokens[j], pause) if j < n else 0.0
            length = -1
            for i in range(j - 1, -1, -1):
                length += 1 + len(tokens[i].text)
                if i < j - 1 and length > width:
                    break
                candidate = cost[k - 1][i] + (length / width) ** 2 + penalty
                if candidate < cost[k][j]:
                    cost[k][j], back[k][j] = candidate, i
    lines, j = [], n
    for k in range(count, 0, -1):
        i = back[k][j]
        lines.append(" ".join(token.text for token in tokens[i:j]))
        j = i
    return tuple(lines[::-1])


def _retime(
    timed: list[tuple[int, int, tuple[str, ...]]], options: CueOptions, duration: int | None = None
) -> list[Cue]:
    """Sort, remove overlaps, keep min_gap where possible, extend short cues into free time, and end no cue
    after ``duration`` (milliseconds) unless it starts there."""
    timed.sort(key=lambda cue: cue[0])
    starts = [cue[0] for cue in timed]
    ends = [cue[1] for cue in timed]
    for k in range(len(timed)):
        if k and starts[k] < ends[k - 1]:
            if starts[k] > starts[k - 1]:
                ends[k - 1] = starts[k]
            else:
                starts[k] = ends[k - 1]
        ends[k] = max(ends[k], starts[k] + 1)
    gap, shortest = to_milliseconds(options.min_gap), to_milliseconds(options.min_duration)
    for k in range(len(timed)):
        # the latest end that keeps the gap to the next cue; the last cue has the time up to the end of the source
        if k + 1 < len(timed):
            limit = starts[k + 1] - gap
        else:
            limit = max(ends[k], starts[k] + shortest)
            if duration is not None:
                limit = min(limit, duration)
        if limit > starts[k]:
            ends[k] = min(ends[k], limit)
        if ends[k] - starts[k] < shortest:
            ends[k] = max(ends[k], min(starts[k] + shortest, limit))
    return [Cue(s / 1000, e / 1000, cue[2]) for s, e, cue in zip(starts, ends, timed, strict=True)]
