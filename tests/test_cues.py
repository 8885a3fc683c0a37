from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samba_cli.cues import CueOptions, build_cues, to_milliseconds
from samba_cli.results import Segment, Word


def _words(spec, start=0.0):
    """Words from (text, duration, gap before) triples, laid end to end from `start`."""
    words, t = [], start
    for text, duration, gap in spec:
        t += gap
        words.append(Word(text, t, t + duration, 0.9))
        t += duration
    return words


def _segment(words, id=0):
    return Segment(id, words[0].start, words[-1].end, " ".join(w.text for w in words), tuple(words))


def _ms(seconds):
    return to_milliseconds(seconds)


def _check_timing(cues):
    for cue in cues:
        assert _ms(cue.end) > _ms(cue.start)
    for a, b in pairwise(cues):
        assert _ms(a.start) < _ms(b.start)
        assert _ms(a.end) <= _ms(b.start)


_texts = st.one_of(
    st.text("abcdefgh", min_size=1, max_size=8),
    st.text("xyz", min_size=30, max_size=60),  # longer than most line widths
    st.tuples(st.text("klmn", min_size=1, max_size=6), st.sampled_from(".?!,;:")).map("".join),
    st.sampled_from(['end."', "(aside)", "said:", "ok?!"]),
)
_durations = st.one_of(st.floats(0.01, 0.6), st.floats(5.0, 12.0))  # some words outlast max_duration
_gaps = st.one_of(st.just(0.0), st.floats(0.0, 0.3), st.floats(0.7, 3.0))  # none, short, around the pause
_word_specs = st.lists(st.tuples(_texts, _durations, _gaps), min_size=1, max_size=80)
_options = st.builds(
    CueOptions,
    max_line_width=st.integers(8, 50),
    max_line_count=st.integers(1, 3),
    max_duration=st.floats(1.0, 8.0),
    min_duration=st.floats(0.0, 1.0),
    min_gap=st.sampled_from([0.0, 0.04, 0.2]),
    pause_seconds=st.floats(0.2, 1.5),
)


@settings(max_examples=80, deadline=None)
@given(specs=_word_specs, options=_options, cuts=st.lists(st.integers(1, 79), max_size=3))
def test_cue_rules_hold_for_any_words(specs, options, cuts):
    words = _words(specs)
    bounds = sorted({0, len(words), *(c for c in cuts if c < len(words))})
    segments = [_segment(words[a:b], i) for i, (a, b) in enumerate(pairwise(bounds))]
    cues = build_cues(segments, options)

    _check_timing(cues)
    assert [t for cue in cues for line in cue.lines for t in line.split(" ")] == [w.text for w in words]
    position = 0
    for cue in cues:
        assert 1 <= len(cue.lines) <= options.max_line_count
        for line in cue.lines:
            assert len(line) <= options.max_line_width or " " not in line  # only a lone word may overflow
        cue_words = words[position : position + len(cue.text.split())]
        position += len(cue_words)
        if len(cue_words) > 1:
            assert _ms(cue.end) - _ms(cue.start) <= _ms(options.max_duration)
            for a, b in pairwise(cue_words):
                assert _ms(b.start) - _ms(a.end) < _ms(options.pause_seconds)  # pauses start a new cue
        assert _ms(cue.start) == _ms(cue_words[0].start)  # cues start with their first word


def test_breaks_after_a_sentence_rather_than_inside_one():
    text = "This is the first sentence here. And now the second sentence follows it"
    words = _words((t, 0.2, 0.05) for t in text.split())
    cues = build_cues([_segment(words)], CueOptions(max_line_width=42, max_line_count=1))
    assert [c.text for c in cues] == [
        "This is the first sentence here.",
        "And now the second sentence follows it",
    ]


def test_a_pause_starts_a_new_cue_even_when_the_text_fits():
    words = _words([("Hello", 0.3, 0.0), ("there", 0.3, 0.1), ("again", 0.3, 1.0)])
    cues = build_cues([_segment(words)])
    assert [c.text for c in cues] == ["Hello there", "again"]


def test_lines_are_balanced():
    text = "one two three four five six seven eight nine ten eleven twelve"  # 63 characters
    cues = build_cues([_segment(_words((t, 0.2, 0.0) for t in text.split()))])
    assert len(cues) == 1 and len(cues[0].lines) == 2
    first, second = map(len, cues[0].lines)
    assert abs(first - second) <= 8


def test_an_overlong_word_gets_a_line_of_its_own():
    long = "Donaudampfschifffahrtsgesellschaftskapitän"
    words = _words([("the", 0.2, 0.0), (long, 0.8, 0.0), ("is", 0.2, 0.0), ("here", 0.2, 0.0)])
    cues = build_cues([_segment(words)], CueOptions(max_line_width=20, max_line_count=3))
    assert [c.lines for c in cues] == [("the", long, "is here")]


def test_long_cues_are_split_at_max_duration():
    words = _words(("word", 0.9, 0.0) for _ in range(20))
    cues = build_cues([_segment(words)], CueOptions(max_duration=2.0))
    assert len(cues) == 10
    assert all(c.end - c.start <= 2.0 for c in cues)
    _check_timing(cues)


def test_a_short_cue_is_extended_into_free_time_but_not_over_the_next():
    words = _words([("Yes.", 0.1, 0.0), ("No.", 0.1, 2.0), ("Maybe.", 0.2, 0.1)])
    cues = build_cues([_segment(words[:2], 0), _segment(words[2:], 1)])
    assert [(c.text, c.start, c.end) for c in cues] == [
        ("Yes.", 0.0, 0.5),  # extended to min_duration
        ("No.", 2.1, 2.26),  # extended only up to min_gap before the next cue
        ("Maybe.", 2.3, 2.8),  # last cue: free time after it
    ]


def test_min_gap_is_kept_between_touching_words_of_different_cues():
    words = _words([("first.", 0.6, 0.0), ("second", 0.6, 0.0)])
    cues = build_cues([_segment(words[:1], 0), _segment(words[1:], 1)])
    assert [(c.start, c.end) for c in cues] == [(0.0, 0.56), (0.6, 1.2)]


def test_cues_do_not_cross_segment_boundaries():
    words = _words((t, 0.2, 0.0) for t in ["a", "b", "c", "d"])
    cues = build_cues([_segment(words[:2], 0), _segment(words[2:], 1)])
    assert [c.text for c in cues] == ["a b", "c d"]


def test_segments_without_words_are_wrapped_and_timed_by_characters():
    text = "aaaa bbbb cccc dddd"  # 19 characters, 5 per word with its space
    segment = Segment(0, 10.0, 11.9, text)
    cues = build_cues([segment], CueOptions(max_line_width=9, max_line_count=1, min_gap=0.0))
    assert [(c.text, c.start, c.end) for c in cues] == [("aaaa bbbb", 10.0, 11.0), ("cccc dddd", 11.0, 11.9)]


def test_overlapping_and_empty_input_still_gives_valid_cues():
    segments = [
        Segment(0, 5.0, 8.0, "late segment first"),
        Segment(1, 0.0, 6.0, "overlaps the one before"),
        Segment(2, 6.0, 6.0, "zero length"),
        Segment(3, 7.0, 7.5, ""),
        Segment(4, 9.0, 9.5, "ignored words", (Word(" ", 9.0, 9.2, 0.5), Word("kept", 9.2, 9.5, 0.5))),
    ]
    cues = build_cues(segments)
    _check_timing(cues)
    assert sorted(w for c in cues for w in c.text.split()) == sorted(
        ["late", "segment", "first", "overlaps", "the", "one", "before", "zero", "length", "kept"]
    )
    assert build_cues([]) == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_line_width", 0),
        ("max_line_count", 0),
        ("max_duration", 0.0),
        ("min_duration", 8.0),
        ("min_gap", -0.1),
        ("pause_seconds", 0.0),
    ],
)
def test_invalid_options_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        CueOptions(**{field: value})


def test_milliseconds_round_halves_up():
    assert [to_milliseconds(s) for s in (0.0, 0.0004, 0.0005, 0.0025, 1.2346, 59.9999)] == [
        0,
        0,
        1,
        3,
        1235,
        60000,
    ]


def test_the_last_cue_ends_by_the_end_of_the_source():
    """A 7.10 s file once got a last cue 6.74-7.24: min_duration stretched it past the end."""
    words = [Word("yes.", 6.74, 6.90, 0.9)]
    cues = build_cues([_segment(words)], CueOptions(min_duration=0.5), duration=7.10)
    assert [(c.start, c.end) for c in cues] == [(6.74, 7.10)]
    # without a known duration the short cue still gets its minimum length
    assert build_cues([_segment(words)], CueOptions(min_duration=0.5))[0].end == 7.24


def test_punctuation_alone_never_makes_a_cue():
    """`--no-vad` on 60 s of silence once gave a cue "." at 60.000-60.500."""
    assert build_cues([Segment(0, 59.9, 60.0, ".", (Word(".", 60.0, 60.0, 0.2),))], duration=60.0) == []
    assert build_cues([Segment(0, 59.9, 60.0, ". ;")], duration=60.0) == []
    # punctuation after a long pause stays with the word before it, and takes none of the pause
    words = (Word("dog", 2.0, 2.4, 0.9), Word(":", 6.6, 6.7, 0.5), Word("yes.", 6.8, 7.2, 0.9))
    cues = build_cues([Segment(0, 2.0, 7.2, "dog : yes.", words)])
    assert [(c.text, c.start, c.end) for c in cues] == [("dog :", 2.0, 2.5), ("yes.", 6.8, 7.3)]
    # and leading punctuation goes with the word after it
    cues = build_cues([Segment(0, 0.0, 1.0, "— yes")])
    assert [c.text for c in cues] == ["— yes"]
