"""Decoded hypotheses -> Segments: word alignment, window time -> source time, splits at pauses, and joins across
window cuts. The stage after the search (samba_cli.decoding), before cues and writers."""

from __future__ import annotations

import dataclasses
import math

import torch

from samba_cli.align import word_spans
from samba_cli.audio import SAMPLE_RATE
from samba_cli.decoding.attention import Hypothesis
from samba_cli.features import HOP_LENGTH
from samba_cli.model.config import ModelConfig
from samba_cli.options import ResolvedOptions, SegmentOptions
from samba_cli.results import Segment, Word
from samba_cli.segments import FrameSpan, split_at_gaps
from samba_cli.tokenizer import Tokenizer
from samba_cli.windows import Window


class SegmentBuilder:
    """Turns the hypothesis of one decoded span of a window into Segments."""

    def __init__(self, tokenizer: Tokenizer, config: ModelConfig, options: ResolvedOptions) -> None:
        self.tokenizer = tokenizer
        self.blank_id = config.blank_id
        self.samples_per_frame = config.subsampling * HOP_LENGTH
        self.word_timestamps = options.word_timestamps
        self.break_pause = options.segments.break_pause_seconds

    def seconds(self, window: Window, frame: float) -> float:
        """Window frame position (fractional allowed) -> source seconds."""
        sample = min(frame * self.samples_per_frame, window.time_map.num_samples)
        return window.time_map.to_source_seconds(sample / SAMPLE_RATE)

    def build(
        self, index: int, window: Window, span: FrameSpan, ctc: torch.Tensor | None, hyp: Hypothesis
    ) -> list[Segment]:
        """The hypothesis of ``span`` (of ``window``, with its CTC log-posteriors ``ctc`` when the model has a CTC
        head) as Segments numbered from ``index``: one, or several when the aligned words leave a pause of
        ``break_pause_seconds`` or more. Segments without a letter or digit (punctuation alone) are left out."""
        tokens = list(hyp.tokens)
        if not tokens:
            return []
        tokenizer = self.tokenizer
        spans = []
        if self.word_timestamps or ctc is not None:
            spans = word_spans(
                tokens,
                list(hyp.token_logprobs),
                tokenizer.word_starts(tokens),
                ctc,
                self.blank_id,
                spoken=[any(c.isalnum() for c in tokenizer.pieces[t]) for t in tokens],
                seconds=lambda frame: self.seconds(window, span.start + frame),
                split_seconds=self.break_pause,
                aligned=None if hyp.alignment is None else list(hyp.alignment),
            )
            # a bare word-start piece before another word start spells nothing
            spans = [w for w in spans if tokenizer.decode(list(w.tokens)).strip()]
        # word times in source seconds: VAD may have cut most of a pause out of the window
        times = [
            (self.seconds(window, span.start + w.start), self.seconds(window, span.start + w.end))
            for w in spans
        ]
        runs = [(0, len(spans))]
        if ctc is not None and spans:
            runs = split_at_gaps(times, self.break_pause)
        segments = []
        for k, (a, b) in enumerate(runs):
            first = span.start if k == 0 else span.start + round(spans[a].start)
            last = span.end if k + 1 == len(runs) else span.start + math.ceil(spans[b - 1].end)
            part_tokens = [t for w in spans[a:b] for t in w.tokens] if len(runs) > 1 else tokens
            part_logprobs = (
                [w.logprob for w in spans[a:b] for _ in w.tokens]
                if len(runs) > 1
                else list(hyp.token_logprobs)
            )
            text = tokenizer.decode(part_tokens).strip()
            if not any(c.isalnum() for c in text):
                continue
            words: tuple[Word, ...] = ()
            if self.word_timestamps:
                words = tuple(
                    Word(
                        text=tokenizer.decode(list(w.tokens)).strip(),
                        start=start,
                        end=end,
                        probability=math.exp(w.logprob),
                    )
                    for w, (start, end) in zip(spans[a:b], times[a:b], strict=True)
                )
            no_speech = span.no_speech_prob
            if len(runs) > 1:
                no_speech = float(ctc[first - span.start : last - span.start, self.blank_id].exp().mean())
            segments.append(
                Segment(
                    id=index + len(segments),
                    start=self.seconds(window, first),
                    end=self.seconds(window, last),
                    text=text,
                    words=words,
                    avg_logprob=sum(part_logprobs) / len(part_logprobs),
                    no_speech_prob=no_speech,
                )
            )
        return segments


class CutJoiner:
    """Joins the segments of each source that a window cut inside speech split in two, and numbers them.

    A source's last segment is held until its next one (or its end) shows whether the two are one: a segment
    followed by the next one of its source after less than half ``break_pause_seconds`` of silence between their
    words (what a cut inside speech leaves) is given joined with it, unless together they would last longer than
    ``max_segment_seconds``. Segment ids count the segments given per source. With ``join=False`` (live: a
    segment is final when its window ends) segments are only numbered and given at once."""

    def __init__(self, options: SegmentOptions, join: bool = True) -> None:
        self.join = join
        # the words at a cut carry up to a VAD pad of silence each (and the first word of a window starts
        # early): half the break pause tells a cut inside speech from one in a pause
        self.pause = options.break_pause_seconds / 2
        self.longest = options.max_segment_seconds
        self.held: dict[
            int, Segment
        ] = {}  # per source, its last segment, until the next one or the source's end
        self.given: dict[int, int] = {}  # per source, segments numbered so far

    def push(self, source: int, segment: Segment) -> Segment | None:
        """Take ``source``'s next segment; give back its previous one when that is complete, else None (without
        joining: the segment itself, numbered)."""
        if not self.join:
            number = self.given.get(source, 0)
            self.given[source] = number + 1
            return dataclasses.replace(segment, id=number)
        previous = self.held.pop(source, None)
        joined = None if previous is None else join_across_cut(previous, segment, self.pause, self.longest)
        if joined is not None:
            self.held[source] = joined
            return None
        number = self.given.get(source, 0)
        self.given[source] = number + 1
        self.held[source] = dataclasses.replace(segment, id=number)
        return previous

    def end(self, source: int) -> Segment | None:
        """``source`` has ended (or nothing more can join its last segment): its held segment, if any."""
        return self.held.pop(source, None)


def join_across_cut(first: Segment, second: Segment, pause: float, longest: float) -> Segment | None:
    """``first`` and ``second`` (consecutive segments of one source) as one segment with ``first``'s id, when
    less than ``pause`` seconds of silence separate them and together they last at most ``longest`` seconds;
    else None. The silence is measured between their words (the last word's end, the next one's start) when both
    have word times, as within a window, where segments are only split at such pauses: so this joins what a
    window cut split."""
    end = first.words[-1].end if first.words and second.words else first.end
    start = second.words[0].start if first.words and second.words else second.start
    if start - end >= pause or second.end - first.start > longest:
        return None
    first_seconds, second_seconds = first.end - first.start, second.end - second.start
    weights = (max(1, len(first.words)), max(1, len(second.words)))
    return Segment(
        id=first.id,
        start=first.start,
        end=second.end,
        text=f"{first.text} {second.text}",
        words=first.words + second.words,
        avg_logprob=(first.avg_logprob * weights[0] + second.avg_logprob * weights[1]) / sum(weights),
        no_speech_prob=(first.no_speech_prob * first_seconds + second.no_speech_prob * second_seconds)
        / max(first_seconds + second_seconds, 1e-9),
    )
