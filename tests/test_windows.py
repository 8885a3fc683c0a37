"""windows.py: cuts fall in silence, only speech is kept, memory stays bounded, the time map is exact."""

from __future__ import annotations

import bisect
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from samba_cli.audio import SAMPLE_RATE, iter_audio
from samba_cli.vad import EnergyDetector, SileroDetector
from samba_cli.windows import TimeMap, Window, WindowOptions, iter_windows
from tests.media_helpers import (
    SENTENCE,
    Layout,
    in_any,
    rss_bytes,
    run_ffmpeg,
    skip_without,
    speech_16k,
    speech_and_silence,
)

SHORT = WindowOptions(window_seconds=20.0, margin_seconds=5.0)  # many windows from little audio


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 5 s of espeak-ng speech at 16 kHz."""
    skip_without("espeak-ng", "sox")
    return speech_16k(SENTENCE, tmp_path_factory.mktemp("windows"))


@pytest.fixture(scope="module")
def layout(clip: np.ndarray) -> Layout:
    """150 s of speech clips separated by 0.8-3 s silences."""
    return speech_and_silence(clip, 150.0)


def blocks_of(samples: np.ndarray, size: int) -> Iterator[np.ndarray]:
    return (samples[start : start + size] for start in range(0, samples.size, size))


def source_indices(time_map: TimeMap) -> np.ndarray:
    """(num_samples,) the source sample of every window sample, expanded from the pieces."""
    return np.concatenate([np.arange(source, source + length) for _, source, length in time_map.pieces])


def cuts(windows: list[Window]) -> list[int]:
    """Source samples of the cuts between consecutive windows."""
    return [round(window.source_end * SAMPLE_RATE) for window in windows[:-1]]


@pytest.mark.parametrize(
    "changes",
    [
        {"window_seconds": 0.0},
        {"window_seconds": 0.01},
        {"margin_seconds": 300.0},
        {"margin_seconds": -1.0},
        {"vad_threshold": 1.0},
        {"min_speech_ms": -1},
        {"speech_pad_ms": -5},
    ],
)
def test_bad_options_are_refused(changes):
    with pytest.raises(ValueError):
        WindowOptions(**changes)


def test_an_unset_margin_follows_the_window_length():
    """The margin rule is the library's: a short window gets a quarter of its length as margin, not a 10 s margin
    it cannot hold (a library call used to fail a check that only the CLI avoided)."""
    assert WindowOptions(window_seconds=120.0).margin == 10.0
    assert WindowOptions().margin == WindowOptions().window_seconds / 4  # the 5 s default: 1.25 s
    assert WindowOptions(window_seconds=20.0).margin == 5.0
    assert WindowOptions(window_seconds=4.0).margin == 1.0
    assert WindowOptions(window_seconds=4.0, margin_seconds=2.0).margin == 2.0  # a given margin is kept
    samples = np.random.default_rng(3).normal(0, 0.1, 16000 * 10).astype(np.float32)
    windows = list(iter_windows([samples], WindowOptions(window_seconds=4.0, vad=False)))
    assert all(w.source_end - w.source_start <= 4.0 + 1.0 for w in windows)
    assert len(windows) >= 2


def test_time_map_rejects_bad_pieces():
    for pieces in [(), ((1, 0, 5),), ((0, 0, 5), (4, 10, 5)), ((0, 10, 5), (5, 12, 5)), ((0, 0, 0),)]:
        with pytest.raises(ValueError):
            TimeMap(pieces)


def test_time_map_edges_and_gaps():
    time_map = TimeMap(((0, 1000, 100), (100, 5000, 50), (150, 5050, 10)))
    assert time_map.num_samples == 160
    assert [time_map.to_source_sample(i) for i in (0, 99, 100, 149, 150, 159, 160)] == [
        1000,
        1099,
        5000,
        5049,
        5050,
        5059,
        5060,
    ]
    assert time_map.to_source_seconds(100 / SAMPLE_RATE) == 5000 / SAMPLE_RATE  # an edge: the later piece
    assert time_map.to_source_seconds(99.5 / SAMPLE_RATE) == pytest.approx(1099.5 / SAMPLE_RATE, abs=1e-12)
    for bad in (-1, 161):
        with pytest.raises(ValueError):
            time_map.to_source_sample(bad)
    with pytest.raises(ValueError):
        time_map.to_source_seconds(0.011)


@st.composite
def time_maps(draw) -> TimeMap:
    """Random pieces: gaps of 0 (touching) or more, anywhere in a long source."""
    position = draw(st.integers(0, 10**9))
    pieces, offset = [], 0
    for length, gap in draw(st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 10**7)), min_size=1)):
        pieces.append((offset, position, length))
        offset, position = offset + length, position + length + gap
    return TimeMap(tuple(pieces))


@settings(max_examples=300, deadline=None)
@given(time_map=time_maps(), data=st.data())
def test_time_map_round_trips_exactly(time_map, data):
    edges = [edge for offset, _, length in time_map.pieces for edge in (offset, offset + length - 1)]
    picks = data.draw(st.lists(st.integers(0, time_map.num_samples), max_size=20))
    for index in [*edges, time_map.num_samples, *picks]:
        source = time_map.to_source_sample(index)
        # Whole-sample times map exactly, window edges included.
        assert time_map.to_source_seconds(index / SAMPLE_RATE) == source / SAMPLE_RATE
        offset, start, _ = next(
            (piece for piece in reversed(time_map.pieces) if piece[0] <= index), time_map.pieces[0]
        )
        assert source == start + index - offset
    # Strictly increasing: no two window samples share a source sample, and none lands in a gap.
    sources = [time_map.to_source_sample(index) for index in sorted({*edges, *picks})]
    assert sources == sorted(set(sources))


def test_the_lead_in_maps_to_the_first_piece_start():
    time_map = TimeMap(((100, 0, 50), (150, 400, 10)), lead=100)
    assert time_map.num_samples == 160
    assert [time_map.to_source_sample(i) for i in (0, 99, 100, 149, 150, 160)] == [0, 0, 0, 49, 400, 410]
    assert time_map.to_source_seconds(0.0) == 0.0 and time_map.to_source_seconds(50 / SAMPLE_RATE) == 0.0
    with pytest.raises(ValueError, match="contiguous"):
        TimeMap(((0, 0, 50),), lead=100)


def test_speech_windows_cut_in_silence_keep_all_speech_and_map_exactly(layout):
    windows = list(iter_windows(blocks_of(layout.samples, 100_003), SHORT, SileroDetector()))
    assert [window.index for window in windows] == list(range(len(windows)))
    assert len(windows) >= 6
    for cut in cuts(windows):
        assert in_any(cut, layout.silence), f"cut at {cut / SAMPLE_RATE:.3f} s is inside speech"
    # The windows tile the source from cut to cut and none is longer than window + margin.
    assert windows[0].source_start == 0 and windows[-1].source_end == layout.samples.size / SAMPLE_RATE
    for before, after in zip(windows, windows[1:], strict=False):
        assert before.source_end == after.source_start
    assert all(w.source_end - w.source_start <= SHORT.window_seconds + SHORT.margin_seconds for w in windows)
    kept = np.zeros(layout.samples.size, bool)
    for window in windows:
        indices = source_indices(window.time_map)
        np.testing.assert_array_equal(window.samples, layout.samples[indices])  # sample-exact map
        assert (
            indices[0] >= window.source_start * SAMPLE_RATE and indices[-1] < window.source_end * SAMPLE_RATE
        )
        assert not kept[indices].any()
        kept[indices] = True
    assert kept[np.abs(layout.samples) > 0.01].all(), "speech was dropped"
    assert kept.mean() < 0.85, "silence was kept"


def test_without_vad_every_sample_is_kept(layout):
    options = WindowOptions(window_seconds=20.0, margin_seconds=5.0, vad=False)
    windows = list(iter_windows(blocks_of(layout.samples, 48_000), options))
    lead = windows[0].time_map.lead  # silence before the first window only (speech may start at sample 0)
    assert lead == options.lead_in_ms * SAMPLE_RATE // 1000 and not windows[0].samples[:lead].any()
    assert all(w.time_map.lead == 0 for w in windows[1:])
    np.testing.assert_array_equal(
        np.concatenate([w.samples[w.time_map.lead :] for w in windows]), layout.samples
    )
    assert all(len(window.time_map.pieces) == 1 for window in windows)
    for cut in cuts(windows):
        assert in_any(cut, layout.silence)


def test_windows_without_speech_are_not_yielded(clip):
    silence = np.zeros(50 * SAMPLE_RATE, np.float32)
    samples = np.concatenate([silence, clip, silence])
    windows = list(iter_windows(blocks_of(samples, 16_000), SHORT, SileroDetector()))
    assert len(windows) == 1 and windows[0].index == 0
    (window,) = windows
    assert 40 <= window.source_start <= 50 <= 55 <= window.source_end <= 75
    start = window.time_map.to_source_seconds(0)
    assert 49.5 < start < 50.0 and window.samples.size < clip.size + SAMPLE_RATE


def test_block_sizes_do_not_change_the_windows(layout):
    samples = layout.samples[: 60 * SAMPLE_RATE]

    def run(size: int) -> list[Window]:
        return list(iter_windows(blocks_of(samples, size), SHORT, EnergyDetector()))

    reference = run(samples.size)
    for size in (511, 4096, 77_777):
        windows = run(size)
        assert [w.time_map for w in windows] == [w.time_map for w in reference]
        for window, expected in zip(windows, reference, strict=True):
            np.testing.assert_array_equal(window.samples, expected.samples)


def test_a_short_input_is_one_window(clip):
    (window,) = iter_windows([clip], WindowOptions(), SileroDetector())
    assert window.source_start == 0 and window.source_end == clip.size / SAMPLE_RATE


class TwoHours:
    """A cheap two-hour stream: noise bursts ("speech", 1-8 s) between digital silences (0.7-3 s)."""

    seconds = 2 * 3600
    block = 30 * SAMPLE_RATE

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.noise = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
        self.speech: list[tuple[int, int]] = []
        self.silence: list[tuple[int, int]] = []
        position, total = 0, self.seconds * SAMPLE_RATE
        while position < total:
            gap, burst = rng.uniform(0.7, 3.0), rng.uniform(1.0, 8.0)
            self.silence.append((position, position + round(gap * SAMPLE_RATE)))
            position = self.silence[-1][1]
            self.speech.append((position, min(position + round(burst * SAMPLE_RATE), total)))
            position = self.speech[-1][1]
        self.total = total

    def blocks(self) -> Iterator[np.ndarray]:
        starts = [start for start, _ in self.speech]
        for begin in range(0, self.total, self.block):
            end = min(begin + self.block, self.total)
            block = np.zeros(end - begin, np.float32)
            for start, stop in self.speech[max(bisect.bisect_right(starts, begin) - 1, 0) :]:
                if start >= end:
                    break
                lo, hi = max(start, begin), min(stop, end)
                if lo < hi:
                    block[lo - begin : hi - begin] = np.resize(self.noise, hi - lo)
            yield block

    def in_silence(self, sample: int) -> bool:
        index = bisect.bisect_right(self.silence, (sample, np.inf)) - 1
        return index >= 0 and self.silence[index][0] <= sample <= self.silence[index][1]


@pytest.mark.slow
def test_two_hours_stream_in_bounded_memory():
    stream, options = TwoHours(), WindowOptions(window_seconds=120.0)  # long windows: the bound that matters
    tracemalloc.start()
    try:
        count, kept, ends = 0, 0, []
        for window in iter_windows(stream.blocks(), options, EnergyDetector()):
            count, kept = count + 1, kept + window.samples.size
            ends.append(round(window.source_end * SAMPLE_RATE))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == pytest.approx(stream.seconds / options.window_seconds, abs=2)
    assert all(stream.in_silence(end) for end in ends[:-1])
    speech = sum(stop - start for start, stop in stream.speech)
    assert speech <= kept < speech * 1.1
    # Held: window + margin + one block (~22 MB). Alive at once: the window the loop variable still holds and
    # the one being built (~20 MB each). About 60 MB in all; the whole input is 461 MB.
    window_bytes = (options.window_seconds + options.margin) * SAMPLE_RATE * 4
    assert peak < 3 * window_bytes + 3 * stream.block * 4


@pytest.mark.slow
def test_twenty_minute_file_streams_from_disk_in_bounded_memory(clip, tmp_path):
    skip_without("espeak-ng", "sox")
    unit = speech_and_silence(clip, 60.0, seed=3)
    sf.write(tmp_path / "unit.wav", unit.samples, SAMPLE_RATE)
    path = tmp_path / "twenty.mp3"
    run_ffmpeg("-stream_loop", "19", "-i", tmp_path / "unit.wav", "-c:a", "libmp3lame", "-b:a", "16k", path)
    options = WindowOptions(window_seconds=60.0, margin_seconds=5.0)
    detector = SileroDetector()
    detector.probabilities(np.zeros(SAMPLE_RATE, np.float32))  # warm up torch before measuring
    rss_before, rss_peak = rss_bytes(), 0
    tracemalloc.start()
    try:
        windows = []
        for window in iter_windows(iter_audio(path, block_seconds=5.0), options, detector):
            windows.append((window.source_start, window.source_end, window.samples.size))
            rss_peak = max(rss_peak, rss_bytes())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert windows[-1][1] == pytest.approx(20 * 60, abs=0.01)
    assert len(windows) == pytest.approx(20, abs=2)
    silence = tuple(
        (start + k * 60 * SAMPLE_RATE, end + k * 60 * SAMPLE_RATE)
        for k in range(20)
        for start, end in unit.silence
    )
    for _, end, _ in windows[:-1]:
        assert in_any(end * SAMPLE_RATE, silence)
    whole_file = 20 * 60 * SAMPLE_RATE * 4  # 77 MB decoded
    assert peak < whole_file / 4
    assert rss_peak - rss_before < whole_file * 0.75
