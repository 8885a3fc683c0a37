"""Transcript writers for txt, srt, vtt, json, jsonl and tsv, looked up by format name in :data:`WRITERS`.

Every writer writes text to a stream the caller opened; :func:`write_file` opens the stream (UTF-8 without a
BOM, ``\\n`` newlines) so that a file is either written whole or left as it was. Times are rounded to the
nearest millisecond by :func:`samba_cli.cues.to_milliseconds` in every format. :class:`LiveWriter` writes the
same text piece by piece while a live transcript grows (every format but json, which is one document). The
formats are described in docs/output-formats.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, TextIO

from samba_cli.atomic import write_atomically
from samba_cli.cues import Cue, CueOptions, CueStream, build_cues, to_milliseconds
from samba_cli.results import Segment, TranscriptionInfo, transcript_text

JSON_SCHEMA_VERSION = 1  # bump when a JSON field changes meaning or goes away
LANGUAGE = "en"  # Samba-ASR models transcribe English only


class Writer(Protocol):
    """Writes a whole transcript in one format to a text stream."""

    extension: ClassVar[str]  # file extension without the dot; also the format's name

    def write(self, segments: Sequence[Segment], info: TranscriptionInfo, stream: TextIO) -> None: ...


def format_timestamp(seconds: float, decimal_marker: str) -> str:
    """``HH:MM:SS<marker>mmm`` rounded to the nearest millisecond; hours grow past two digits as needed."""
    if seconds < 0:
        raise ValueError(f"cannot format a negative time: {seconds} s")
    hours, rest = divmod(to_milliseconds(seconds), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{decimal_marker}{millis:03d}"


def _one_line(text: str) -> str:
    """Tabs, newlines and runs of spaces become single spaces."""
    return " ".join(text.split())


def _seconds(seconds: float) -> float:
    """Seconds rounded to the millisecond, for JSON."""
    return to_milliseconds(seconds) / 1000


def _score(value: float) -> float | None:
    """A score for JSON, which has no NaN or infinity: those become null."""
    return value if math.isfinite(value) else None


def _duration(info: TranscriptionInfo) -> float | None:
    """The source's length for the cues to end by; None when unknown (0)."""
    return info.duration if info.duration > 0 else None


def _timing(cue: Cue, decimal_marker: str) -> str:
    return f"{format_timestamp(cue.start, decimal_marker)} --> {format_timestamp(cue.end, decimal_marker)}"


def _vtt_escape(text: str) -> str:
    """Cue text for WebVTT: no ``-->`` (it would start a cue), and ``& < >`` as character references."""
    text = text.replace("-->", "->")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- one item of each format, shared by the whole-file and the live writers ---------------------------------------

VTT_HEADER = "WEBVTT\n\n"
TSV_HEADER = "start\tend\ttext\n"


def _txt_line(segment: Segment) -> str:
    return f"{_one_line(segment.text)}\n"


def _srt_cue(number: int, cue: Cue) -> str:
    return f"{number}\n{_timing(cue, ',')}\n{cue.text}\n\n"


def _vtt_cue(cue: Cue) -> str:
    return f"{_timing(cue, '.')}\n{_vtt_escape(cue.text)}\n\n"


def _tsv_row(segment: Segment) -> str:
    start, end = to_milliseconds(segment.start), to_milliseconds(segment.end)
    return f"{start}\t{end}\t{_one_line(segment.text)}\n"


def _json_segment(segment: Segment) -> dict[str, Any]:
    """A segment as the JSON formats give it (json's ``segments`` items, jsonl's lines)."""
    return {
        "id": segment.id,
        "start": _seconds(segment.start),
        "end": _seconds(segment.end),
        "text": segment.text,
        "avg_logprob": _score(segment.avg_logprob),
        "no_speech_prob": _score(segment.no_speech_prob),
        "words": [
            {
                "text": word.text,
                "start": _seconds(word.start),
                "end": _seconds(word.end),
                "probability": _score(word.probability),
            }
            for word in segment.words
        ],
    }


def _jsonl_line(segment: Segment) -> str:
    return json.dumps(_json_segment(segment), ensure_ascii=False, allow_nan=False) + "\n"


@dataclass(frozen=True)
class TxtWriter:
    """Plain text, one segment per line."""

    extension: ClassVar[str] = "txt"

    def write(self, segments: Sequence[Segment], info: TranscriptionInfo, stream: TextIO) -> None:
        for segment in segments:
            stream.write(_txt_line(segment))


@dataclass(frozen=True)
class SrtWriter:
    """SubRip subtitles: cues numbered from 1, ``HH:MM:SS,mmm`` times, a blank line after each cue."""

    extension: ClassVar[str] = "srt"
    cue_options: CueOptions = field(default_factory=CueOptions)  # how words become cues and lines

    def write(self, segments: Sequence[Segment], info: TranscriptionInfo, stream: TextIO) -> None:
        for number, cue in enumerate(build_cues(segments, self.cue_options, _duration(info)), start=1):
            stream.write(_srt_cue(number, cue))


@dataclass(frozen=True)
class VttWriter:
    """WebVTT subtitles: a ``WEBVTT`` header, ``HH:MM:SS.mmm`` times, escaped cue text."""

    extension: ClassVar[str] = "vtt"
    cue_options: CueOptions = field(default_factory=CueOptions)  # how words become cues and lines

    def write(self, segments: Sequence[Segment], info: TranscriptionInfo, stream: TextIO) -> None:
        stream.write(VTT_HEADER)
        for cue in build_cues(segments, self.cue_options, _duration(info)):
            stream.write(_vtt_cue(cue))


@dataclass(frozen=True)
class JsonWriter:
    """One JSON document with the run's metadata, the segments and their words (schema_version 1)."""

    extension: ClassVar[str] = "json"

    def write(self, segments: Sequence[Segment], info: TranscriptionInfo, stream: TextIO) -> None:
        document: dict[str, Any] = {
            "schema_version": JSON_SCHEMA_VERSION,
            "source": info.source,
            "model": info.model,
            "revision": info.revision,
            "duration": _seconds(info.duration),
            "language": LANGUAGE,
            "options": info.options,
            "text": transcript_text(segments),
            "segments": [_json_segment(segment) for segment in segments],
        }
        json.dump(document, stream, ensure_ascii=False, indent=2, allow_nan=False)
        stream.write("\n")


@dataclass(frozen=True)
class TsvWriter:
    """Tab-separated ``start``, ``end`` (integer milliseconds) and ``text``, one segment per row."""

    extension: ClassVar[str] = "tsv"

    def write(self, segments: Sequence[Segment], info: TranscriptionInfo, stream: TextIO) -> None:
        stream.write(TSV_HEADER)
        for segment in segments:
            stream.write(_tsv_row(segment))


@dataclass(frozen=True)
class JsonlWriter:
    """JSON Lines: one object per segment, with the fields of the json format's segments (no run metadata)."""

    extension: ClassVar[str] = "jsonl"

    def write(self, segments: Sequence[Segment], info: TranscriptionInfo, stream: TextIO) -> None:
        for segment in segments:
            stream.write(_jsonl_line(segment))


WRITERS: dict[str, Writer] = {
    "txt": TxtWriter(),
    "srt": SrtWriter(),
    "vtt": VttWriter(),
    "json": JsonWriter(),
    "jsonl": JsonlWriter(),
    "tsv": TsvWriter(),
}
# json is one document: it cannot be written piece by piece
LIVE_FORMATS = ("txt", "srt", "vtt", "jsonl", "tsv")


class LiveWriter:
    """The text of one format written piece by piece as a live transcript grows (:class:`~samba_cli.results.
    LiveUpdate`); the pieces joined are what the whole-file writer gives for the same segments and duration."""

    def __init__(self, name: str, cue_options: CueOptions | None = None) -> None:
        if name not in LIVE_FORMATS:
            raise ValueError(
                f"{name} cannot be written live (one document); use one of {', '.join(LIVE_FORMATS)}"
            )
        self.name = name
        self.cues = CueStream(cue_options or CueOptions()) if name in ("srt", "vtt") else None
        self.numbered = 0  # srt cues written

    def begin(self) -> str:
        """The text before the first segment (a header)."""
        return {"vtt": VTT_HEADER, "tsv": TSV_HEADER}.get(self.name, "")

    def add(self, segments: Sequence[Segment], until: float | None, duration: float | None = None) -> str:
        """The text of what has become final with ``segments`` added: a stream transcribed up to ``until``
        seconds (None: ended, ``duration`` seconds long)."""
        if self.cues is None:
            line = {"txt": _txt_line, "tsv": _tsv_row, "jsonl": _jsonl_line}[self.name]
            return "".join(line(segment) for segment in segments)
        self.cues.add(segments)
        cues = self.cues.take(until, duration)
        if self.name == "vtt":
            return "".join(_vtt_cue(cue) for cue in cues)
        text = "".join(_srt_cue(self.numbered + k, cue) for k, cue in enumerate(cues, start=1))
        self.numbered += len(cues)
        return text


def get_writer(name: str, cue_options: CueOptions | None = None) -> Writer:
    """The writer for a format name (case-insensitive).

    ``cue_options`` configures the subtitle formats (srt, vtt); the other formats have no cues and ignore it.
    """
    writer = WRITERS.get(name.lower())
    if writer is None:
        raise ValueError(f"unknown output format {name!r}; choose one of: {', '.join(WRITERS)}")
    if cue_options is not None and isinstance(writer, SrtWriter | VttWriter):
        return replace(writer, cue_options=cue_options)
    return writer


def write_file(
    writer: Writer, segments: Sequence[Segment], info: TranscriptionInfo, path: str | os.PathLike
) -> None:
    """Write a transcript to ``path`` atomically (see :func:`samba_cli.atomic.write_atomically`)."""
    write_atomically(path, lambda stream: writer.write(segments, info, stream))
