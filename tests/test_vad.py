"""vad.py: silero equals its reference loop, streams, falls back to energy; speech_regions rules."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from samba_cli import vad
from samba_cli.vad import (
    FRAME_SAMPLES,
    EnergyDetector,
    SileroDetector,
    SpeechDetector,
    default_detector,
    frame_levels_db,
    speech_regions,
)
from tests.media_helpers import SENTENCE, skip_without, speech_16k

SECOND = 16000


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """1 s of silence, espeak-ng speech, 1.5 s of silence (16 kHz)."""
    skip_without("espeak-ng", "sox")
    clip = speech_16k(SENTENCE, tmp_path_factory.mktemp("vad"))
    return np.concatenate([np.zeros(SECOND, np.float32), clip, np.zeros(3 * SECOND // 2, np.float32)])


def bursts(seconds: float, seed: int = 0) -> np.ndarray:
    """Alternating 1 s of loud noise (-20 dBFS) and 1 s of faint noise (-70 dBFS)."""
    noise = np.random.default_rng(seed).standard_normal(round(seconds * SECOND)).astype(np.float32)
    loud = (np.arange(noise.size) // SECOND) % 2 == 0
    return noise * np.where(loud, 0.1, 0.0003).astype(np.float32)


def test_frame_levels():
    samples = np.concatenate([np.full(FRAME_SAMPLES, 0.5, np.float32), np.zeros(100, np.float32)])
    levels = frame_levels_db(samples)
    assert levels.shape == (2,)
    assert levels[0] == pytest.approx(10 * np.log10(0.25), abs=1e-4)
    assert levels[1] == pytest.approx(-100.0)
    assert frame_levels_db(np.full(100, 0.5, np.float32))[0] == pytest.approx(levels[0], abs=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # silero's own loader: torch.jit.load
def test_silero_matches_its_frame_by_frame_loop(speech):
    from silero_vad import load_silero_vad

    frames = -(-speech.size // FRAME_SAMPLES)
    padded = np.zeros(frames * FRAME_SAMPLES, np.float32)
    padded[: speech.size] = speech
    model = load_silero_vad()
    with torch.inference_mode():
        expected = [
            model(torch.from_numpy(chunk)[None], 16000).item()
            for chunk in padded.reshape(frames, FRAME_SAMPLES)
        ]
    # TorchScript's optimised re-runs differ from the first runs by up to ~1e-4.
    np.testing.assert_allclose(SileroDetector().probabilities(speech), expected, atol=1e-3)


def test_silero_finds_the_speech(speech):
    probs = SileroDetector().probabilities(speech)
    frames_per_second = SECOND / FRAME_SAMPLES
    assert probs[: int(0.9 * frames_per_second)].max() < 0.1  # the leading silence
    assert probs[-int(1.2 * frames_per_second) :].max() < 0.1  # the trailing silence
    assert np.mean(probs > 0.5) > 0.5


@pytest.mark.parametrize("make", [SileroDetector, EnergyDetector])
def test_streaming_equals_one_call_and_reset_restarts(make, speech):
    detector: SpeechDetector = make()
    whole = detector.probabilities(speech)
    detector.reset()
    cuts = [0, 7 * FRAME_SAMPLES, 8 * FRAME_SAMPLES, 100 * FRAME_SAMPLES, speech.size]
    pieces = [detector.probabilities(speech[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert [piece.size for piece in pieces] == [7, 1, 92, whole.size - 100]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
    detector.reset()
    np.testing.assert_allclose(detector.probabilities(speech), whole, atol=1e-6)
    assert detector.probabilities(np.zeros(0, np.float32)).shape == (0,)


def test_energy_detector_separates_loud_from_faint():
    probs = EnergyDetector().probabilities(bursts(10))
    frames = np.arange(probs.size) * FRAME_SAMPLES // SECOND  # the second each frame starts in
    loud, faint = probs[frames % 2 == 0], probs[frames % 2 == 1]
    assert np.median(loud) > 0.99 and np.median(faint) < 0.01


def test_detectors_follow_the_protocol():
    assert isinstance(EnergyDetector(), SpeechDetector)
    assert isinstance(SileroDetector(), SpeechDetector)
    assert isinstance(default_detector(), SileroDetector)


def test_silero_leaves_torch_threads_alone():
    code = (
        "import torch; torch.set_num_threads(2); from samba_cli.vad import SileroDetector; import numpy;"
        "SileroDetector().probabilities(numpy.zeros(5000, numpy.float32)); print(torch.get_num_threads())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "2"


def test_fallback_to_energy_without_silero(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # makes `import silero_vad` raise ImportError
    vad._silero.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="samba_cli.vad"):
            detector = default_detector()
    finally:
        vad._silero.cache_clear()
    assert isinstance(detector, EnergyDetector)
    assert "falling back" in caplog.text


def frames_to_probs(pattern: str) -> np.ndarray:
    """'.' = 0.0, 'o' = 0.4 (between the two thresholds), '#' = 0.9, one character per frame."""
    return np.array([{".": 0.0, "o": 0.4, "#": 0.9}[c] for c in pattern], np.float32)


def test_speech_regions_rules():
    f = FRAME_SAMPLES
    # Hysteresis: 'o' continues speech but does not start it.
    assert speech_regions(frames_to_probs("..oo####oo....oo.."), 0.5, 0, 0, 0) == [(4 * f, 10 * f)]
    # A 3-frame (96 ms) gap is bridged when min_silence is 100 ms, kept when it is 90 ms.
    probs = frames_to_probs("..####...####..")
    assert speech_regions(probs, 0.5, 0, 100, 0) == [(2 * f, 13 * f)]
    assert speech_regions(probs, 0.5, 0, 90, 0) == [(2 * f, 6 * f), (9 * f, 13 * f)]
    # min_speech drops the 4-frame (128 ms) regions.
    assert speech_regions(probs, 0.5, 130, 90, 0) == []
    # Padding is clipped at both ends, and padded regions that meet are merged.
    assert speech_regions(probs, 0.5, 0, 90, 40) == [(2 * f - 640, 6 * f + 640), (9 * f - 640, 13 * f + 640)]
    assert speech_regions(probs, 0.5, 0, 90, 50, num_samples=14 * f - 10) == [(2 * f - 800, 14 * f - 10)]
    assert speech_regions(frames_to_probs("#"), 0.5, 0, 0, 1000) == [(0, f)]
    assert speech_regions(np.zeros(0, np.float32), 0.5, 0, 0, 0) == []


@settings(max_examples=200, deadline=None)
@given(
    probs=st.lists(st.floats(0, 1, width=32), max_size=300),
    threshold=st.floats(0.05, 0.95),
    min_speech_ms=st.integers(0, 1000),
    min_silence_ms=st.integers(0, 1000),
    pad_ms=st.integers(0, 500),
)
def test_speech_regions_are_sorted_disjoint_and_cover_confident_speech(
    probs, threshold, min_speech_ms, min_silence_ms, pad_ms
):
    array = np.array(probs, np.float32)
    regions = speech_regions(array, threshold, min_speech_ms, min_silence_ms, pad_ms)
    edges = [edge for region in regions for edge in region]
    assert edges == sorted(edges) and len(set(edges)) == len(edges)  # sorted, disjoint, not touching
    assert all(0 <= edge <= array.size * FRAME_SAMPLES for edge in edges)
    if min_speech_ms == 0:  # nothing is dropped: every confident frame is inside a region
        for frame in np.flatnonzero(array.astype(np.float64) >= threshold):
            assert any(a <= frame * FRAME_SAMPLES and (frame + 1) * FRAME_SAMPLES <= b for a, b in regions)


def test_loading_silero_prints_no_warning(monkeypatch):
    """With torch 2.14, main printed `FutureWarning: torch.jit.load is deprecated` (silero-vad's loading) on every
    default run, even with -q. Here torch.jit.load is made to warn as that torch does."""
    import warnings

    load = torch.jit.load

    def deprecated_load(*args, **kwargs):
        warnings.warn("`torch.jit.load` is deprecated", FutureWarning, stacklevel=2)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", deprecated_load)
    vad._silero.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vad._silero()
    finally:
        vad._silero.cache_clear()
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))], caught
