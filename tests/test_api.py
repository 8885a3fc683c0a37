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
