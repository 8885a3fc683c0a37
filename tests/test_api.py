"""load_model + transcribe through the public API with a tiny random local checkpoint."""

import numpy as np
import pytest

import samba_cli
from samba_cli.errors import BackendError
from samba_cli.model import save_checkpoint
from tests.model_helpers import tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(tiny_model(), folder, tokenizer_file=tiny_tokenizer.path)
    return folder


def test_transcribe_samples_is_lazy_and_counts_duration(checkpoint):
    model = samba_cli.load_model(checkpoint, device="cpu")
    assert model.resolved.source == "local"
    samples = np.random.default_rng(0).normal(0, 0.1, 16000 * 5).astype(np.float32)
    segments, info = model.transcribe(samples, vad=False, window_seconds=3.0, margin_seconds=0.5)
    assert info.duration == 0.0, "nothing is decoded before iteration"
    result = list(segments)
    assert info.duration == pytest.approx(5.0)
    assert info.model == model.resolved.model_id
    assert info.options["window"]["vad"] is False
    assert all(0 <= s.start < s.end <= 5.0 + 1e-6 for s in result)


def test_a_short_window_needs_no_margin_through_the_library(checkpoint):
    model = samba_cli.load_model(checkpoint, device="cpu")
    samples = np.random.default_rng(0).normal(0, 0.1, 16000 * 5).astype(np.float32)
    segments, info = model.transcribe(
        samples, vad=False, window_seconds=2.0
    )  # the old fixed 10 s margin: refused
    list(segments)
    assert info.options["window"]["margin_seconds"] == 0.5  # a quarter of the window, resolved once


def test_transcribe_file(checkpoint, tmp_path):
    import soundfile as sf

    path = tmp_path / "noise.wav"
    sf.write(path, np.random.default_rng(1).normal(0, 0.1, 16000 * 2).astype(np.float32), 16000)
    model = samba_cli.load_model(checkpoint, device="cpu")
    segments, info = model.transcribe(path, vad=False, decoder="ctc")
    list(segments)
    assert info.source == str(path)
    assert info.duration == pytest.approx(2.0)


def test_cuda_request_without_cuda_is_a_clear_error(checkpoint):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(BackendError, match="CUDA is not available"):
        samba_cli.load_model(checkpoint, device="cuda")


def test_auto_decoder_follows_the_checkpoint(tmp_path, tiny_tokenizer):
    save_checkpoint(
        tiny_model(), tmp_path, tokenizer_file=tiny_tokenizer.path, metadata={"default_decoder": "ctc"}
    )
    model = samba_cli.load_model(tmp_path, device="cpu")
    _, info = model.transcribe(np.zeros(16000, np.float32))
    assert info.options["decode"]["decoder"] == "ctc"
    _, info = model.transcribe(np.zeros(16000, np.float32), decoder="attention")
    assert info.options["decode"]["decoder"] == "attention"


def test_default_decoder_is_attention(checkpoint):
    model = samba_cli.load_model(checkpoint, device="cpu")
    _, info = model.transcribe(np.zeros(16000, np.float32))
    assert info.options["decode"]["decoder"] == "attention"


def test_transcribe_many_shares_decoder_batches_across_inputs(checkpoint, tmp_path, monkeypatch):
    import soundfile as sf

    from samba_cli.pipeline import Pipeline

    rng = np.random.default_rng(2)
    clips = [rng.normal(0, 0.1, 16000 * n).astype(np.float32) for n in (2, 3, 1)]
    missing = tmp_path / "missing.wav"
    path = tmp_path / "clip.wav"
    sf.write(path, clips[0], 16000)
    batches = []
    decode = Pipeline.decode_batch

    def recording(self, batch):
        batches.append({p.source for p in batch})
        return decode(self, batch)

    monkeypatch.setattr(Pipeline, "decode_batch", recording)
    model = samba_cli.load_model(checkpoint, device="cpu")
    inputs = [(clips[0], "a"), clips[1], path, missing, (iter([clips[2]]), "d")]
    events, infos = model.transcribe_many(inputs, vad=False, blank_threshold=0.05, max_segment_seconds=0.5)
    assert infos == [], "nothing is read before iteration"
    events = list(events)
    assert [i.source for i in infos] == ["a", "<array>", str(path), str(missing), "d"]
    assert [i.duration for i in infos] == pytest.approx([2.0, 3.0, 2.0, 0.0, 1.0])
    ends = [e for e in events if e.segment is None]
    assert [(e.source, e.done) for e in ends] == [(0, True), (1, True), (2, True), (3, False), (4, True)]
    assert str(missing) in str(ends[3].error)
    assert any(len(sources) > 1 for sources in batches), "segments of several inputs share a batch"
    alone, _ = model.transcribe(clips[1], vad=False, blank_threshold=0.05, max_segment_seconds=0.5)
    assert [s.text for s in alone] == [e.segment.text for e in events if e.source == 1 and e.segment]


def test_options_are_resolved_once_per_run(checkpoint, tmp_path, monkeypatch):
    """`transcribe` resolves its options once; resolved options pass through unchanged (the batch resolves once
    for all its files, then hands the resolved options on); overrides of resolved options are refused."""
    import soundfile as sf

    import samba_cli.api as api_module
    from samba_cli.batch import BatchTranscriber
    from samba_cli.options import TranscribeOptions, resolve

    calls = []

    def counting(options, model, device="cpu"):
        calls.append(type(options).__name__)
        return resolve(options, model, device)

    monkeypatch.setattr(api_module, "resolve", counting)
    model = samba_cli.load_model(checkpoint, device="cpu")
    segments, info = model.transcribe(np.zeros(16000, np.float32), beam_size=2)
    list(segments)
    assert calls == ["TranscribeOptions"] and info.options["decode"]["beam_size"] == 2
    calls.clear()
    resolved = model.resolve_options(TranscribeOptions.from_kwargs(vad=False))
    assert model.resolve_options(resolved) is resolved
    list(model.transcribe(np.zeros(16000, np.float32), resolved)[0])
    with pytest.raises(TypeError, match="resolved already"):
        model.transcribe(np.zeros(16000, np.float32), resolved, beam_size=3)
    runner = BatchTranscriber(model, TranscribeOptions.from_kwargs(vad=False))
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    events, _ = model.transcribe_many([tmp_path / "a.wav", np.zeros(8000, np.float32)], runner.options)
    list(events)
    assert calls == ["TranscribeOptions", "ResolvedOptions", "TranscribeOptions"]  # the batch: once
