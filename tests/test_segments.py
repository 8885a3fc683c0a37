import torch

from samba_cli.segments import SegmentOptions, split_segments

FRAME = 0.04


def blanks(pattern):
    """'s' speech frame (blank prob 0.1), '.' silent frame (0.99)."""
    return torch.tensor([0.1 if c == "s" else 0.99 for c in pattern])


def test_split_at_long_pauses_only():
    pattern = "." * 5 + "s" * 20 + "." * 3 + "s" * 10 + "." * 12 + "s" * 15 + "." * 4
    spans = split_segments(
        blanks(pattern), FRAME, SegmentOptions(min_pause_seconds=0.32, max_segment_seconds=1.5)
    )
    assert [(s.start, s.end) for s in spans] == [(5, 38), (50, 65)]


def test_long_speech_is_cut_below_the_maximum():
    pattern = "s" * 300 + "." * 2 + "s" * 300
    spans = split_segments(blanks(pattern), FRAME, SegmentOptions(max_segment_seconds=10.0))
    assert all(s.length <= 250 for s in spans)
    assert spans[0].start == 0 and spans[-1].end == 602
    assert all(a.end == b.start for a, b in zip(spans, spans[1:], strict=False))


def test_silence_gives_no_segments():
    assert split_segments(blanks("." * 100), FRAME, SegmentOptions()) == []


def test_no_speech_prob_is_mean_blank():
    spans = split_segments(blanks("s" * 10), FRAME, SegmentOptions())
    assert abs(spans[0].no_speech_prob - 0.1) < 1e-6


def test_split_at_gaps_breaks_runs_at_long_gaps_only():
    from samba_cli.segments import split_at_gaps

    times = [(0.0, 0.4), (0.5, 0.9), (1.8, 2.0), (2.1, 2.3), (9.0, 9.5)]
    assert split_at_gaps(times, 0.8) == [(0, 2), (2, 4), (4, 5)]
    assert split_at_gaps(times, 10.0) == [(0, 5)]
    assert split_at_gaps([], 0.8) == []
