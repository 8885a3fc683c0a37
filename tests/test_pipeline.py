"""The pipeline end to end with a tiny random model on generated speech: structure and timing, not accuracy."""

import numpy as np
import pytest

from samba_cli.pipeline import Pipeline, TranscribeOptions
from samba_cli.windows import iter_windows
from tests.media_helpers import ESPEAK, speech_16k
from tests.model_helpers import tiny_model

pytestmark = pytest.mark.skipif(ESPEAK is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    clip = speech_16k("Hello there. This is a short test of the pipeline.", tmp_path_factory.mktemp("speech"))
    silence = np.zeros(16000 * 3, dtype=np.float32)
    return np.concatenate([silence, clip, silence, clip, silence])


def _run(tokenizer, samples, **kwargs):
    # Blank-heavy CTC head so the random model still produces pauses and speech-like spans.
    model = tiny_model()
    options = TranscribeOptions.from_kwargs(
        window_seconds=4.0, margin_seconds=1.0, max_segment_seconds=2.0, blank_threshold=0.05, **kwargs
    )
    pipeline = Pipeline(model, tokenizer, options)
    return list(pipeline.run(iter_windows([samples], options.window)))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"vad": False}, {"decoder": "ctc"}, {"beam_size": 2}, {"word_timestamps": False, "batch_size": 1}],
)
def test_timestamps_monotonic_and_in_range(tiny_tokenizer, speech, kwargs):
    segments = _run(tiny_tokenizer, speech, **kwargs)
    duration = len(speech) / 16000
    assert segments, "the random model should still emit some text"
    assert [s.id for s in segments] == list(range(len(segments)))
    for prev, cur in zip(segments, segments[1:], strict=False):
        assert cur.start >= prev.end - 1e-6
    for seg in segments:
        assert 0 <= seg.start < seg.end <= duration + 1e-6
        assert seg.text
        for w in seg.words:
            assert seg.start - 1e-6 <= w.start < w.end <= seg.end + 0.25
            assert 0 < w.probability <= 1
        assert [w.start for w in seg.words] == sorted(w.start for w in seg.words)
    if kwargs.get("word_timestamps", True) is False:
        assert all(not s.words for s in segments)


def test_vad_drops_silence(tiny_tokenizer, speech):
    for seg in _run(tiny_tokenizer, speech):
        assert not (seg.end <= 2.9), "nothing may be decoded in the leading 3 s of silence"


def test_options_from_kwargs_reject_unknown():
    with pytest.raises(TypeError, match="unknown transcription option"):
        TranscribeOptions.from_kwargs(beam=3)
    opts = TranscribeOptions.from_kwargs(beam_size=3, vad=False, max_segment_seconds=5.0)
    assert (opts.decode.beam_size, opts.window.vad, opts.segments.max_segment_seconds) == (3, False, 5.0)
