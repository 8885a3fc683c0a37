"""The fused tier: mamba-ssm's Triton kernels (the ``fused`` backend) against the pure-PyTorch backend, on the CPU.

Runs under Triton's interpreter: ``pip install -e '.[dev,fused-tier]'`` then ``tools/fused-tier.sh``, which builds
and installs the pure-Python mamba-ssm wheel and runs ``python -m pytest -m fused tests/test_fused.py`` with
TRITON_INTERPRET=1 (docs/architecture.md, "Testing the fused backend without a GPU"). Without TRITON_INTERPRET=1
these tests are skipped (tests/conftest.py). The shims the interpreter needs are in tests/fused_shims.py.

float32 and float16 only: bfloat16 ``tl.dot`` is wrong in the interpreter (triton-lang/triton#11584);
tests/test_cuda.py covers bfloat16 on a GPU. Shapes stay tiny (the interpreter runs each kernel program in Python).
"""

import json
from functools import partial

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from samba_cli.decoding.attention import beam_search, greedy_search
from samba_cli.decoding.stepper import StaticStepper
from samba_cli.model import PRESETS, SambaASR, load_checkpoint, save_checkpoint
from samba_cli.model.mamba import Mamba2Mixer
from samba_cli.ops import get_ops
from tests import fused_shims
from tests.model_helpers import TINY
from tests.train_helpers import write_corpus

pytestmark = pytest.mark.fused

# 4 heads of 16 and chunks of 16: the fewest kernel programs that still give several chunks and groups of heads.
FUSED_TINY = TINY.replace(headdim=16, chunk_size=16, encoder_layers=1, decoder_layers=1)
DTYPES = [torch.float32, torch.float16]
# max abs error allowed, relative to the largest reference value: float32 kernels agree to ~1e-6, float16 ones round
# their inputs and outputs to 11 bits
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2}


@pytest.fixture(scope="module", autouse=True)
def shims():
    with pytest.MonkeyPatch.context() as patch:
        fused_shims.install(patch)
        yield


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    actual, expected = actual.float(), expected.float()
    scale = expected.abs().max().item() + 1e-6
    error = (actual - expected).abs().max().item()
    assert error <= TOLERANCE[dtype] * scale, f"max abs error {error:.3g} for values up to {scale:.3g}"


def model_pair(dtype: torch.dtype, sharpen: bool = False) -> tuple[SambaASR, SambaASR]:
    """Two copies of one random model, on the torch and the fused backend."""
    reference = SambaASR(FUSED_TINY).eval()
    if sharpen:  # a decisive argmax: decoding compares tokens, which must not hinge on rounding
        with torch.no_grad():
            reference.decoder.embed.weight.mul_(4.0)
    fused = SambaASR(FUSED_TINY).eval()
    fused.load_state_dict(reference.state_dict())
    reference, fused = reference.to(dtype), fused.to(dtype)
    assert fused.set_backend("fused") == "fused"
    return reference, fused


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mixer_forward_and_gradients_match_torch(dtype):
    kwargs = {"d_model": 32, "d_state": 8, "headdim": 16, "chunk_size": 16, "ngroups": 2}
    reference = Mamba2Mixer(**kwargs).to(dtype)
    fused = Mamba2Mixer(**kwargs).to(dtype)
    fused.load_state_dict(reference.state_dict())
    fused.ops = get_ops("fused")
    u = torch.randn(2, 37, 32, dtype=dtype)  # 3 chunks, the last one partly filled
    out_ref, out_fused = reference(u), fused(u)
    assert_close(out_fused, out_ref, dtype)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_fused.backward(grad)
    for (name, p_ref), p_fused in zip(reference.named_parameters(), fused.parameters(), strict=True):
        try:
            assert_close(p_fused.grad, p_ref.grad, dtype)
        except AssertionError as exc:
            raise AssertionError(f"gradient of {name}: {exc}") from None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@torch.no_grad()
def test_encoder_decoder_and_step_match_torch(dtype):
    reference, fused = model_pair(dtype)
    features = torch.randn(2, FUSED_TINY.n_mels, 150, dtype=dtype)
    lengths = torch.tensor([150, 110])
    states, enc_lengths = reference.encode(features, lengths)
    states_fused, enc_lengths_fused = fused.encode(features, lengths)
    assert torch.equal(enc_lengths_fused, enc_lengths)
    assert_close(states_fused, states, dtype)

    tokens = torch.randint(4, FUSED_TINY.vocab_size, (2, 6))
    logits = reference.decode(tokens, states, enc_lengths)
    assert_close(fused.decode(tokens, states, enc_lengths), logits, dtype)
    state_ref = reference.allocate_state(states, enc_lengths)
    state_fused = fused.allocate_state(states, enc_lengths)
    for t in range(tokens.shape[1]):
        step = fused.step(tokens[:, t], state_fused)
        assert_close(step, reference.step(tokens[:, t], state_ref), dtype)
        assert_close(step, logits[:, t], dtype)  # teacher forcing: steps equal the whole-sequence pass
    for m_ref, m_fused in zip(state_ref.mixers, state_fused.mixers, strict=True):
        assert_close(m_fused.ssm, m_ref.ssm, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mixer_weights_load_into_mamba_ssm(dtype):
    from mamba_ssm.modules.mamba2 import Mamba2

    kwargs = {"d_model": 32, "d_state": 8, "headdim": 16, "chunk_size": 16}
    ours = Mamba2Mixer(**kwargs).to(dtype)
    theirs = Mamba2(**kwargs, use_mem_eff_path=False).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    u = torch.randn(2, 37, 32, dtype=dtype)
    with torch.no_grad():
        assert_close(theirs(u), ours(u), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_static_stepper_on_fused_kernels_matches_eager_torch(dtype):
    """The CUDA-graph stepper's static buffers (no graph: that needs CUDA) over the fused step kernel."""
    reference, fused = model_pair(dtype, sharpen=True)
    with torch.no_grad():
        states, lengths = reference.encode(
            torch.randn(3, FUSED_TINY.n_mels, 120, dtype=dtype), torch.tensor([120, 90, 60])
        )
    static = StaticStepper(fused, rows=8, frames=32, use_graph=False)  # 3 segments x beam 2
    for search in (
        partial(greedy_search, max_repeats=100),
        partial(beam_search, beam_size=2, length_penalty=1.0, max_repeats=100),
    ):
        eager = search(reference, states, lengths, [6] * 3)
        fixed = search(fused, states, lengths, [6] * 3, make_stepper=partial(static.load))
        assert [h.tokens for h in fixed] == [h.tokens for h in eager]


def test_transcribe_with_the_fused_backend_gives_the_torch_words(tmp_path, tiny_tokenizer):
    import samba_cli

    reference, _ = model_pair(torch.float32, sharpen=True)
    save_checkpoint(reference, tmp_path, tokenizer_file=tiny_tokenizer.path)
    t = np.arange(int(16000 * 2.5)) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 1.5 * t))).astype(np.float32)
    results = {}
    for backend in ("torch", "fused"):
        model = samba_cli.load_model(tmp_path, device="cpu", backend=backend)
        assert model.model.backend == backend
        segments, _ = model.transcribe(clip, vad=False, max_tokens_per_second=3.0)
        results[backend] = list(segments)
    words = {name: [w for s in segments for w in s.words] for name, segments in results.items()}
    assert words["torch"], "the clip should give words"
    assert [s.text for s in results["fused"]] == [s.text for s in results["torch"]]
    assert [w.text for w in words["fused"]] == [w.text for w in words["torch"]]
    for times in ("start", "end"):
        fused_times = [getattr(w, times) for w in words["fused"]]
        assert fused_times == pytest.approx([getattr(w, times) for w in words["torch"]], abs=1e-6)


def test_train_run_on_the_fused_backend_matches_torch(tmp_path, monkeypatch, tiny_tokenizer):
    """A few steps of ``samba train run``: same losses, gradient norms and weights on both backends."""
    from samba_cli.cli import app

    monkeypatch.setitem(PRESETS, "test", FUSED_TINY)
    manifest = write_corpus(tmp_path / "corpus")
    options = {"--preset": "test", "--max-steps": 2, "--workers": 0, "--threads": 1, "--speeds": "1.0"}
    options |= {"--accumulate": 1, "--max-batch-utterances": 3, "--max-batch-seconds": 3, "--warmup-steps": 1}
    options |= {"--lr": 3e-3, "--freq-masks": 0, "--time-masks": 0, "--device": "cpu"}
    records, weights = {}, {}
    for backend in ("torch", "fused"):
        out = tmp_path / backend
        command = ["train", "run", str(manifest), "--tokenizer", str(tiny_tokenizer.path), "--out", str(out)]
        command += [str(x) for option in options.items() for x in option] + ["--backend", backend]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        lines = (out / "metrics.jsonl").read_text().splitlines()
        records[backend] = [r for r in map(json.loads, lines) if "grad_norm" in r]
        weights[backend] = load_checkpoint(out / "checkpoint", backend="torch").state_dict()
    assert len(records["fused"]) == 2
    for fused, reference in zip(records["fused"], records["torch"], strict=True):
        assert fused["loss"] == pytest.approx(reference["loss"], rel=1e-4)
        assert fused["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-3)
    for name, value in weights["torch"].items():
        assert_close(weights["fused"][name], value, torch.float32)
