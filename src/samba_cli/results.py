"""Result types shared by the pipeline, the cue builder and the writers. Times are seconds in source time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    text: str  # the word as written, with its punctuation, without surrounding spaces
    start: float  # seconds from the start of the source
    end: float  # seconds, > start
    probability: float  # confidence in [0, 1]


@dataclass(frozen=True)
class Segment:
    id: int  # 0-based, in source order
    start: float  # seconds from the start of the source
    end: float  # seconds, >= start
    text: str  # the segment transcript, stripped
    words: tuple[Word, ...] = ()  # empty when word timestamps are off
    avg_logprob: float = 0.0  # mean token log-probability of the hypothesis
    no_speech_prob: float = 0.0  # share of blank frames in the segment's CTC posteriors


def transcript_text(segments: Iterable[Segment]) -> str:
    """The transcript of ``segments`` as one line of text (the json format's ``text``)."""
    return " ".join(segment.text for segment in segments if segment.text)


@dataclass
class TranscriptionInfo:
    """About one transcription. ``duration`` grows while the segment generator runs and is final when it ends."""

    source: str  # the input path, or "-" for stdin
    duration: float  # seconds of audio decoded from the source so far (all of it once segments are exhausted)
    model: str  # model id (Hub repo, local folder or bundled name)
    revision: str | None  # Hub revision (commit) when known
    options: dict[str, Any] = field(default_factory=dict)  # the options used, as plain JSON values


@dataclass(frozen=True)
class LiveUpdate:
    """What a live transcription (``Transcriber.transcribe_live``) gives after each window of the stream."""

    segments: tuple[Segment, ...]  # the segments final since the last update, in order
    # seconds of the stream read and transcribed: every segment that starts before has been given
    until: float
    final: bool = False  # the stream has ended (or was stopped): nothing follows
