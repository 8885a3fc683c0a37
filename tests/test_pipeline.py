"""The pipeline end to end with a tiny random model on generated speech: structure and timing, not accuracy."""

import dataclasses
import threading

import numpy as np
import pytest
import torch

import samba_cli.pipeline as pipeline_module
from samba_cli.errors import MediaError
from samba_cli.options import ModelFacts, ResolvedOptions, TranscribeOptions, resolve
from samba_cli.pipeline import FLUSH, Pipeline
from samba_cli.windows import iter_windows
from tests.media_helpers import ESPEAK, speech_16k
from tests.model_helpers import tiny_model

pytestmark = pytest.mark.skipif(ESPEAK is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    clip = speech_16k("Hello there. This is a short test of the pipeline.", tmp_path_factory.mktemp("speech"))
    silence = np.zeros(16000 * 3, dtype=np.float32)
    return np.concatenate([silence, clip, silence, clip, silence])


def _resolved(options: TranscribeOptions) -> ResolvedOptions:
    """The options resolved as for a model without folder, metadata or language model, on the CPU."""
    return resolve(options, ModelFacts())


def _run(tokenizer, samples, **kwargs):
    # Blank-heavy CTC head so the random model still produces pauses and speech-like spans.
    model = tiny_model()
    options = TranscribeOptions.from_kwargs(
        window_seconds=4.0, margin_seconds=1.0, max_segment_seconds=2.0, blank_threshold=0.05, **kwargs
    )
    pipeline = Pipeline(model, tokenizer, _resolved(options))
    return list(pipeline.run(iter_windows([samples], options.window)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"vad": False},
        {"decoder": "ctc"},
        {"decoder": "ctc", "beam_size": 4, "rescore_weight": 1.0},
        {"beam_size": 2},
        {"word_timestamps": False, "batch_size": 1},
    ],
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
    base = TranscribeOptions.from_kwargs(end_wait_seconds=5.0)
    assert (
        TranscribeOptions.from_kwargs(base, beam_size=2).end_wait_seconds == 5.0
    )  # changes apply to the base


def test_flat_keywords_reach_nested_fields_and_the_json_options_stay_flat():
    opts = TranscribeOptions.from_kwargs(lm=None, rescore_weight=0.5, beam_size=4, vad=False)
    assert (opts.decode.ctc.lm, opts.decode.ctc.rescore_weight, opts.decode.beam_size) == (None, 0.5, 4)
    assert TranscribeOptions.from_kwargs(opts, attention_beam=2).decode.ctc.rescore_weight == 0.5  # kept
    with pytest.raises(ValueError, match="CTC decoding only"):  # the groups' checks see the new values
        TranscribeOptions.from_kwargs(decoder="attention", lm="books.arpa")
    decode = opts.to_dict()["decode"]
    assert "ctc" not in decode and (decode["lm"], decode["rescore_weight"], decode["beam_size"]) == (
        None,
        0.5,
        4,
    )
    assert list(decode)[:3] == [
        "decoder",
        "beam_size",
        "lm",
    ]  # the CTC fields where they stood before nesting
    resolved = _resolved(opts)
    assert resolve(resolved, ModelFacts(folder=None, metadata={"default_decoder": "ctc"})) is resolved
    assert resolved.to_dict()["decode"]["lm"] is None and list(resolved.to_dict()) == list(opts.to_dict())


def test_flat_keywords_name_one_field_each():
    """``transcribe(beam_size=5, vad=False)``: a keyword can only mean one field of one option group."""
    from samba_cli.options import CTCOptions, DecodeOptions, SegmentOptions, WindowOptions, option_owners

    groups = ("window", "segments", "decode", "ctc")  # the option groups (DecodeOptions.ctc nested in decode)
    members = (WindowOptions, SegmentOptions, DecodeOptions, CTCOptions, TranscribeOptions)
    names = [f.name for g in members for f in dataclasses.fields(g) if f.name not in groups]
    assert len(names) == len(set(names)), "a field name is shared by two option groups"
    assert sorted(option_owners()) == sorted(names)


# -- several sources: shared encoder and decoder batches ----------------------------------------------------------


def _sources(speech):
    """Four sources of different lengths (the second one short enough for one window)."""
    return [speech, speech[: 16000 * 3], speech[16000 * 2 :], speech[::-1].copy()]


def _events(pipeline, sources, broken=None):
    def windows(k, samples):
        yield from iter_windows([samples], pipeline.options.window)
        if k == broken:  # after all its windows: its queued segments must be dropped
            raise MediaError("bad.mp3", "broken on purpose")

    return list(pipeline.run_sources(windows(k, s) for k, s in enumerate(sources)))


def _pipeline(tokenizer, **kwargs):
    options = TranscribeOptions.from_kwargs(
        window_seconds=4.0,
        margin_seconds=1.0,
        max_segment_seconds=2.0,
        blank_threshold=0.05,
        vad=False,
        **kwargs,
    )
    torch.manual_seed(0)
    return Pipeline(tiny_model(), tokenizer, _resolved(options))


def test_batched_encoder_matches_one_window_at_a_time(tiny_tokenizer, speech):
    pipeline = _pipeline(tiny_tokenizer)
    windows = [w for s in _sources(speech) for w in iter_windows([s], pipeline.options.window)]
    together = pipeline.encode_windows(windows)
    for window, batched in zip(windows, together, strict=True):
        (alone,) = pipeline.encode_windows([window])
        assert [(p.span.start, p.span.end) for p in batched] == [(p.span.start, p.span.end) for p in alone]
        for a, b in zip(alone, batched, strict=True):
            assert b.span.no_speech_prob == pytest.approx(a.span.no_speech_prob, abs=1e-5)
        for a, b in zip(alone, batched, strict=True):
            torch.testing.assert_close(b.encoded.states, a.encoded.states, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(b.encoded.ctc, a.encoded.ctc, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("decoder", ["attention", "ctc"])
def test_sources_sharing_batches_give_what_each_gives_alone(tiny_tokenizer, speech, decoder):
    shared = _pipeline(tiny_tokenizer, decoder=decoder, batch_size=8, encoder_batch_seconds=30.0)
    alone = _pipeline(tiny_tokenizer, decoder=decoder, batch_size=1, encoder_batch_seconds=1.0)
    events = _events(shared, _sources(speech))
    # events in source order, each source's segments numbered from 0 and followed by its end
    assert [e.source for e in events] == sorted(e.source for e in events)
    for k, samples in enumerate(_sources(speech)):
        mine = [e for e in events if e.source == k]
        assert mine[-1].done and all(e.segment is not None for e in mine[:-1])
        expected = list(alone.run(iter_windows([samples], alone.options.window)))
        got = [e.segment for e in mine[:-1]]
        assert [s.text for s in got] == [s.text for s in expected]
        assert [s.id for s in got] == list(range(len(got)))
        for a, b in zip(got, expected, strict=True):
            assert a.start == pytest.approx(b.start) and a.end == pytest.approx(b.end)


def test_a_failing_source_ends_with_its_error_and_the_others_go_on(tiny_tokenizer, speech):
    pipeline = _pipeline(tiny_tokenizer, batch_size=8, encoder_batch_seconds=30.0)
    events = _events(pipeline, _sources(speech), broken=2)
    ends = [e for e in events if e.segment is None]
    assert [e.source for e in ends] == [0, 1, 2, 3]
    assert [e.done for e in ends] == [True, True, False, True]
    assert "broken on purpose" in str(ends[2].error)
    assert not [e for e in events if e.source == 2 and e.segment is not None]


def test_one_source_raises_its_error(tiny_tokenizer, speech):
    pipeline = _pipeline(tiny_tokenizer)

    def windows():
        yield from iter_windows([speech], pipeline.options.window)
        raise MediaError("bad.mp3", "cut short")

    with pytest.raises(MediaError, match="cut short"):
        list(pipeline.run(windows()))


@pytest.mark.parametrize("threads", [0, 1], ids=["in-turn", "encoder-ahead"])
def test_flush_finishes_earlier_sources_before_a_blocking_one(tiny_tokenizer, speech, monkeypatch, threads):
    """A FLUSH before a source that may block (standard input) finishes the earlier sources without waiting for
    it, whether the windows are encoded in turn (one core) or ahead in a thread."""
    monkeypatch.setattr(pipeline_module, "encoder_threads", lambda device: threads)
    pipeline = _pipeline(tiny_tokenizer, batch_size=64, encoder_batch_seconds=600.0)
    for flush in (False, True):
        finished = threading.Event()
        blocked = []

        def blocking(finished=finished, blocked=blocked):
            blocked.append(not finished.wait(timeout=2))  # read before source 0 was finished: it waits
            yield from iter_windows([speech], pipeline.options.window)

        first = iter_windows([speech], pipeline.options.window)
        sources = [first, FLUSH, blocking()] if flush else [first, blocking()]
        events = []
        for event in pipeline.run_sources(sources):
            events.append(event)
            if event.source == 0 and event.done:
                finished.set()
        # without a flush source 0 waits for source 1 to fill the batches; with one it is finished first
        assert blocked == [not flush]
        assert [e.source for e in events if e.done] == [0, 1]


def test_encoding_ahead_gives_the_same_events(tiny_tokenizer, speech, monkeypatch):
    """Windows encoded ahead in a thread (two torch threads or more) give the events of windows encoded in
    turn, a source's media error included; the encoder thread's torch thread count is its own."""

    def sources(pipeline):
        def broken():
            yield from iter_windows([speech], pipeline.options.window)
            raise MediaError("bad.mp3", "cut short")

        return [
            iter_windows([speech], pipeline.options.window),
            broken(),
            iter_windows([speech[:8000]], pipeline.options.window),
        ]

    runs = []
    before = torch.get_num_threads()
    for threads in (0, 1):
        monkeypatch.setattr(pipeline_module, "encoder_threads", lambda device, threads=threads: threads)
        pipeline = _pipeline(tiny_tokenizer, batch_size=3, encoder_batch_seconds=0.0)
        runs.append(
            [
                (e.source, e.segment and (e.segment.text, e.segment.start), str(e.error))
                for e in pipeline.run_sources(sources(pipeline))
            ]
        )
    assert runs[0] == runs[1]
    assert torch.get_num_threads() == before  # the encoder thread set its own count only
    assert [r[0] for r in runs[0] if "cut short" in r[2]] == [1]
    assert any(r[1] for r in runs[0])  # segments were decoded at all


def test_an_ended_source_is_decoded_without_waiting_for_a_full_batch(tiny_tokenizer, speech, monkeypatch):
    """main decoded a short file's segments only once a batch was full: with long files after it, all were
    written at the same moment, and an interrupt lost the short one finished long before."""
    # windows encoded in turn, so that reads and decoding interleave in a fixed order (ahead, the encoder thread
    # reads later sources earlier; the decoding side, tested here, is the same: see the test above)
    monkeypatch.setattr(pipeline_module, "encoder_threads", lambda device: 0)
    log = []

    def windows(k, samples):
        log.append(("read", k))
        yield from iter_windows([samples], pipeline.options.window)

    for wait, expected in ((60.0, False), (5.0, True)):
        log.clear()
        pipeline = _pipeline(tiny_tokenizer, batch_size=64, encoder_batch_seconds=1.0, end_wait_seconds=wait)
        for event in pipeline.run_sources(windows(k, speech) for k in range(4)):
            log.append(("event", event.source, event.done))
        # source 0 (17 s) ends: with 5 s to wait it is done before the third source is read
        assert (log.index(("event", 0, True)) < log.index(("read", 2))) is expected


def test_a_window_cut_inside_speech_does_not_split_a_segment():
    from samba_cli.results import Segment, Word
    from samba_cli.transcript import join_across_cut

    def seg(i, start, end, text):
        return Segment(i, start, end, text, (Word(text, start, end, 0.9),), -0.5, 0.1)

    a, b = seg(0, 1.0, 5.0, "over the"), seg(1, 5.3, 7.0, "hills")
    joined = join_across_cut(a, b, pause=0.4, longest=20.0)
    assert (joined.id, joined.start, joined.end, joined.text) == (0, 1.0, 7.0, "over the hills")
    assert joined.words == a.words + b.words and joined.avg_logprob == -0.5
    assert join_across_cut(a, seg(1, 5.5, 7.0, "hills"), pause=0.4, longest=20.0) is None  # a pause
    assert join_across_cut(a, seg(1, 5.3, 22.0, "hills"), pause=0.4, longest=20.0) is None  # too long
