import dataclasses
import io
import json
import math

import pytest
import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from samba_cli import atomic, writers
from samba_cli.cues import CueOptions, build_cues, to_milliseconds
from samba_cli.results import Segment, TranscriptionInfo, Word
from samba_cli.writers import (
    WRITERS,
    JsonWriter,
    SrtWriter,
    TxtWriter,
    VttWriter,
    format_timestamp,
    get_writer,
    write_file,
)

INFO = TranscriptionInfo("talk.wav", 360003.0, "samba-asr/tiny", "abc123", {"beam_size": 1})


def _segment(id, texts, start, step=0.3004, **scores):
    words = tuple(Word(t, start + i * step, start + (i + 1) * step - 0.05, 0.75) for i, t in enumerate(texts))
    return Segment(id, start, words[-1].end, " ".join(texts), words, **scores)


SEGMENTS = [
    _segment(0, ["Fish", "&", "chips", "<b>cheap</b>", "today."], 0.0004, avg_logprob=-0.25),
    _segment(1, ["a", "-->", "b", "and", "café", "—", "naïve"], 3.0),
    Segment(2, 5.5, 7.0, "no word\ttimestamps here,\nthis segment is wrapped by characters"),
    _segment(3, ["past", "a", "hundred", "hours"], 360000.1237),
]


def _render(writer, segments=SEGMENTS, info=INFO):
    stream = io.StringIO()
    writer.write(segments, info, stream)
    return stream.getvalue()


def _ms(seconds):
    return to_milliseconds(seconds)


def _delta_ms(delta):
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def _unescape_vtt(text):
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@pytest.mark.parametrize(
    "seconds, marker, expected",
    [
        (0.0, ",", "00:00:00,000"),
        (0.0005, ",", "00:00:00,001"),
        (59.9996, ",", "00:01:00,000"),
        (3723.004, ".", "01:02:03.004"),
        (360000.25, ".", "100:00:00.250"),
    ],
)
def test_timestamps_round_to_the_nearest_millisecond(seconds, marker, expected):
    assert format_timestamp(seconds, marker) == expected


def test_negative_timestamps_are_rejected():
    with pytest.raises(ValueError, match="negative"):
        format_timestamp(-0.001, ",")


def test_srt_parses_numbers_cues_from_one_and_round_trips_times():
    out = _render(SrtWriter())
    cues = build_cues(SEGMENTS)
    parsed = list(srt.parse(out))
    assert [s.index for s in parsed] == list(range(1, len(cues) + 1))
    for sub, cue in zip(parsed, cues, strict=True):
        assert (_delta_ms(sub.start), _delta_ms(sub.end)) == (_ms(cue.start), _ms(cue.end))
        assert sub.content == cue.text
    assert out.startswith("1\n00:00:00,000 --> ")
    assert "\n\n2\n" in out and "100:00:00,124 --> " in out


def test_vtt_parses_escapes_text_and_round_trips_times():
    out = _render(VttWriter())
    assert out.startswith("WEBVTT\n\n00:00:00.000 --> ")
    cues = build_cues(SEGMENTS)
    parsed = webvtt.from_buffer(io.StringIO(out), strict=True).captions
    assert len(parsed) == len(cues)
    for caption, cue in zip(parsed, cues, strict=True):
        assert caption.start_time.in_milliseconds() == _ms(cue.start)
        assert caption.end_time.in_milliseconds() == _ms(cue.end)
        assert "-->" not in caption.raw_text
        assert _unescape_vtt(caption.raw_text) == cue.text.replace("-->", "->")
    assert "Fish &amp; chips &lt;b&gt;cheap&lt;/b&gt; today." in out
    assert "a -&gt; b" in out


_cue_words = st.lists(st.text("ab&<>-é!.,", min_size=1, max_size=12), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(texts=_cue_words, start=st.floats(0.0, 400_000.0), step=st.floats(0.0011, 2.0))
def test_subtitles_round_trip_any_text_and_time(texts, start, step):
    segments = [_segment(0, texts, start, step=step)]
    # a source that ends a second after the segment: the writers end the last cue by the source's end
    info = dataclasses.replace(INFO, duration=segments[-1].end + 1.0)
    cues = build_cues(segments, duration=info.duration)
    subs = list(srt.parse(_render(SrtWriter(), segments, info)))
    captions = webvtt.from_buffer(io.StringIO(_render(VttWriter(), segments, info)), strict=True).captions
    for sub, caption, cue in zip(subs, captions, cues, strict=True):
        assert sub.content == cue.text
        assert _delta_ms(sub.start) == caption.start_time.in_milliseconds() == _ms(cue.start)
        assert _delta_ms(sub.end) == caption.end_time.in_milliseconds() == _ms(cue.end)
        assert _unescape_vtt(caption.raw_text) == cue.text.replace("-->", "->")


def test_json_matches_the_schema():
    segment = Segment(
        7,
        1.23456,
        2.5,
        "Hi there.",
        (Word("Hi", 1.23456, 1.5, 0.9), Word("there.", 1.6, 2.4999, 0.8)),
        avg_logprob=-0.1,
        no_speech_prob=0.02,
    )
    blank = Segment(8, 3.0, 3.5, "", avg_logprob=math.nan)
    document = json.loads(_render(JsonWriter(), [segment, blank]))
    assert document == {
        "schema_version": 1,
        "source": "talk.wav",
        "model": "samba-asr/tiny",
        "revision": "abc123",
        "duration": 360003.0,
        "language": "en",
        "options": {"beam_size": 1},
        "text": "Hi there.",
        "segments": [
            {
                "id": 7,
                "start": 1.235,
                "end": 2.5,
                "text": "Hi there.",
                "avg_logprob": -0.1,
                "no_speech_prob": 0.02,
                "words": [
                    {"text": "Hi", "start": 1.235, "end": 1.5, "probability": 0.9},
                    {"text": "there.", "start": 1.6, "end": 2.5, "probability": 0.8},
                ],
            },
            {
                "id": 8,
                "start": 3.0,
                "end": 3.5,
                "text": "",
                "avg_logprob": None,
                "no_speech_prob": 0.0,
                "words": [],
            },
        ],
    }


def test_json_is_strict_utf8_and_times_are_whole_milliseconds():
    out = _render(JsonWriter())
    document = json.loads(out, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert "café" in out  # not \u escaped
    assert document["text"] == " ".join(s.text for s in SEGMENTS)
    times = [t for s in document["segments"] for t in (s["start"], s["end"])]
    times += [t for s in document["segments"] for w in s["words"] for t in (w["start"], w["end"])]
    assert all(round(t * 1000) / 1000 == t for t in times)


def test_tsv_has_integer_milliseconds_and_one_line_per_segment():
    rows = [line.split("\t") for line in _render(WRITERS["tsv"]).splitlines()]
    assert rows[0] == ["start", "end", "text"]
    assert len(rows) == len(SEGMENTS) + 1
    for row, segment in zip(rows[1:], SEGMENTS, strict=True):
        assert len(row) == 3
        assert (int(row[0]), int(row[1])) == (_ms(segment.start), _ms(segment.end))
    assert rows[1][0] == "0"
    assert rows[3][2] == "no word timestamps here, this segment is wrapped by characters"


def test_txt_writes_one_segment_per_line():
    lines = _render(WRITERS["txt"]).splitlines()
    assert lines == [" ".join(s.text.split()) for s in SEGMENTS]


def test_registry_names_match_extensions():
    assert set(WRITERS) == {"txt", "srt", "vtt", "json", "jsonl", "tsv"}
    assert all(name == writer.extension for name, writer in WRITERS.items())
    assert get_writer("SRT") is WRITERS["srt"]


def test_unknown_format_lists_the_valid_ones():
    with pytest.raises(ValueError, match="docx.*txt, srt, vtt, json, jsonl, tsv"):
        get_writer("docx")


def test_cue_options_configure_subtitle_writers_only():
    narrow = CueOptions(max_line_width=10, max_line_count=1)
    srt_writer = get_writer("srt", cue_options=narrow)
    assert srt_writer == SrtWriter(narrow) and WRITERS["srt"] == SrtWriter()
    assert get_writer("vtt", cue_options=narrow) == VttWriter(narrow)
    assert get_writer("txt", cue_options=narrow) is WRITERS["txt"]
    assert all(len(sub.content) <= 10 or " " not in sub.content for sub in srt.parse(_render(srt_writer)))


def test_write_file_writes_utf8_without_bom_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "out.srt"
    write_file(WRITERS["srt"], SEGMENTS, INFO, path)
    data = path.read_bytes()
    assert data.decode("utf-8") == _render(SrtWriter())
    assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data
    assert list(tmp_path.iterdir()) == [path]


def test_write_file_keeps_the_old_file_when_the_writer_fails(tmp_path, monkeypatch):
    def half_then_fail(self, segments, info, stream):
        stream.write("half a transcript")
        raise RuntimeError("disk on fire")

    path = tmp_path / "out.txt"
    path.write_text("old transcript\n")
    monkeypatch.setattr(TxtWriter, "write", half_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_file(WRITERS["txt"], SEGMENTS, INFO, path)
    assert path.read_text() == "old transcript\n"
    assert list(tmp_path.iterdir()) == [path]


def test_write_file_removes_the_temporary_file_when_the_rename_fails(tmp_path, monkeypatch):
    def refuse(source, target):
        raise PermissionError(f"cannot replace {target}")

    monkeypatch.setattr(writers.os, "replace", refuse)
    with pytest.raises(PermissionError):
        write_file(WRITERS["json"], SEGMENTS, INFO, tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


def test_write_all_atomically_keeps_every_old_file_when_one_fails(tmp_path):
    """Staged first, swapped after: a full disk while writing the second file leaves the first one old too."""
    import errno

    from samba_cli.atomic import write_all_atomically

    def full(stream):
        stream.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    old_txt, old_srt = tmp_path / "a.txt", tmp_path / "a.srt"
    old_txt.write_text("OLD txt\n")
    old_srt.write_text("OLD srt\n")
    with pytest.raises(OSError, match="No space") as caught:
        write_all_atomically([(old_txt, lambda s: s.write("new txt\n")), (old_srt, full)])
    assert caught.value.filename == str(old_srt)
    assert (old_txt.read_text(), old_srt.read_text()) == ("OLD txt\n", "OLD srt\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.srt", "a.txt"]

    write_all_atomically(
        [(old_txt, lambda s: s.write("new txt\n")), (tmp_path / "new.json", lambda s: s.write("{}"))]
    )
    assert old_txt.read_text() == "new txt\n" and (tmp_path / "new.json").read_text() == "{}"


def test_write_all_atomically_puts_back_files_already_replaced_when_a_rename_fails(tmp_path, monkeypatch):
    replace = writers.os.replace
    calls = []

    def second_fails(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        replace(source, target)

    old = tmp_path / "a.txt"
    old.write_text("OLD\n")
    monkeypatch.setattr(writers.os, "replace", second_fails)
    with pytest.raises(PermissionError):
        atomic.write_all_atomically(
            [(old, lambda s: s.write("new\n")), (tmp_path / "b.txt", lambda s: s.write("b"))]
        )
    assert old.read_text() == "OLD\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
