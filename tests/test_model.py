import sys

import pytest
import torch

from samba_cli.errors import BackendError
from samba_cli.model import PRESETS, SambaASR, preset
from samba_cli.ops import resolve_backend
from tests.model_helpers import TINY, tiny_model


def test_shapes_and_lengths():
    model = tiny_model()
    feats = torch.randn(2, TINY.n_mels, 103)
    lengths = torch.tensor([103, 61])
    tokens = torch.randint(0, TINY.vocab_size, (2, 9))
    out = model(feats, lengths, tokens)
    assert out.encoder_lengths.tolist() == [26, 16]
    assert out.ctc_logits.shape == (2, 26, TINY.vocab_size + 1)
    assert out.logits.shape == (2, 9, TINY.vocab_size)


@pytest.mark.parametrize("frames", [64, 61, 58])
def test_padding_does_not_change_encoder_output(frames):
    """A sequence padded with noise inside a batch encodes like the sequence alone, whatever its length (the
    subsampling convolutions must not see the padding either)."""
    model = tiny_model()
    feats = torch.randn(1, TINY.n_mels, frames)
    alone, alone_lengths = model.encode(feats)
    padded = torch.cat([feats, torch.randn(1, TINY.n_mels, 104 - frames)], dim=2)
    batch = torch.cat([padded, torch.randn(1, TINY.n_mels, 104)])
    states, lengths = model.encode(batch, torch.tensor([frames, 104]))
    assert lengths[0] == alone_lengths[0] == alone.shape[1]
    torch.testing.assert_close(states[0, : lengths[0]], alone[0], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_the_chunk_size_changes_speed_only():
    model = tiny_model()
    other = tiny_model(chunk_size=32)
    other.load_state_dict(model.state_dict())
    feats, lengths = torch.randn(2, TINY.n_mels, 400), torch.tensor([400, 257])
    tokens = torch.randint(4, TINY.vocab_size, (2, 50))
    a, b = model(feats, lengths, tokens), other(feats, lengths, tokens)
    torch.testing.assert_close(a.ctc_logits, b.ctc_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tie", [True, False])
def test_teacher_forced_step_matches_full_decoder(tie):
    model = tiny_model(tie_embeddings=tie)
    feats = torch.randn(3, TINY.n_mels, 80)
    lengths = torch.tensor([80, 50, 33])
    states, enc_lengths = model.encode(feats, lengths)
    tokens = torch.randint(0, TINY.vocab_size, (3, 12))
    full = model.decode(tokens, states, enc_lengths)
    state = model.allocate_state(states, enc_lengths)
    steps = torch.stack([model.step(tokens[:, t], state) for t in range(tokens.shape[1])], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-4, rtol=1e-4)


def test_state_reorder_follows_beams():
    model = tiny_model()
    states, lengths = model.encode(torch.randn(2, TINY.n_mels, 40), torch.tensor([40, 40]))
    tokens = torch.randint(0, TINY.vocab_size, (2, 5))
    state = model.allocate_state(states, lengths)
    for t in range(4):
        model.step(tokens[:, t], state)
    state.reorder(torch.tensor([1, 1, 0]))
    assert state.batch_size == 3
    logits = model.step(tokens[[1, 1, 0], 4], state)
    full = model.decode(tokens, states, lengths)[:, 4]
    torch.testing.assert_close(logits, full[[1, 1, 0]], atol=1e-4, rtol=1e-4)


def test_hypotheses_sharing_a_memory_step_like_copies_of_it():
    """Beams of one segment read its keys and values once (group > 1): same logits as one copy per beam."""
    model = tiny_model()
    states, lengths = model.encode(torch.randn(2, TINY.n_mels, 40), torch.tensor([40, 28]))
    rows = torch.tensor([0, 0, 0, 1, 1, 1])
    tokens = torch.randint(0, TINY.vocab_size, (6, 6))
    shared = model.allocate_state(states, lengths, group=3)
    copied = model.allocate_state(states[rows], lengths[rows])
    assert shared.batch_size == copied.batch_size == 6 and shared.keys[0].shape[0] == 2
    for t in range(5):
        torch.testing.assert_close(
            model.step(tokens[:, t], shared), model.step(tokens[:, t], copied), atol=1e-5, rtol=1e-4
        )
    order = torch.tensor([2, 2, 0, 4, 3, 3])  # hypotheses trade places within their segment
    shared.reorder(order, memory=False)
    copied.reorder(order, memory=False)
    torch.testing.assert_close(
        model.step(tokens[order, 5], shared), model.step(tokens[order, 5], copied), atol=1e-5, rtol=1e-4
    )
    with pytest.raises(ValueError, match="cannot move it"):
        shared.reorder(order)  # a row cannot take another segment's memory
    # teacher forcing: 3 sequences per memory, against a copy of the memory per sequence
    full = model.decode(tokens, states[rows], lengths[rows])
    torch.testing.assert_close(model.decode(tokens, states, lengths), full, atol=1e-5, rtol=1e-4)


def test_reorder_within_a_segment_moves_only_the_recurrent_state():
    model = tiny_model()
    states, lengths = model.encode(torch.randn(2, TINY.n_mels, 40), torch.tensor([40, 28]))
    rows = torch.tensor([0, 0, 1, 1])  # two hypotheses per segment, as beam search keeps them
    tokens = torch.randint(0, TINY.vocab_size, (4, 5))
    state = model.allocate_state(states[rows], lengths[rows])
    for t in range(4):
        model.step(tokens[:, t], state)
    keys = state.keys
    order = torch.tensor([1, 1, 2, 2])  # each row takes a hypothesis of its own segment
    state.reorder(order, memory=False)
    assert state.keys is keys
    logits = model.step(tokens[order, 4], state)
    full = model.decode(tokens[order], states[rows], lengths[rows])[:, 4]
    torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)


def test_bfloat16_forward_runs_close_to_float32():
    model = tiny_model()
    feats = torch.randn(1, TINY.n_mels, 64)
    tokens = torch.randint(0, TINY.vocab_size, (1, 6))
    ref = model(feats, torch.tensor([64]), tokens).logits
    out = model.to(torch.bfloat16)(feats.bfloat16(), torch.tensor([64]), tokens).logits
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_presets_build_and_differ_in_size():
    counts = {name: SambaASR(preset(name)).num_parameters() for name in ("tiny", "small")}
    assert counts["tiny"] < counts["small"]
    assert set(PRESETS) == {"tiny", "small", "base"}


def test_backend_selection_on_cpu():
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(BackendError, match="CUDA"):
        resolve_backend("fused", "cpu")
    with pytest.raises(BackendError, match="unknown backend"):
        resolve_backend("quantum", "cpu")


def test_int8_linear_layers_stay_close_to_float32(tmp_path, monkeypatch):
    """dtype int8 (CPU): the decoder's nn.Linear layers become int8 dynamically quantized layers, the encoder's
    stay (same encoder states); the decoder's outputs stay close to the float32 ones; a GPU asks in vain."""
    from samba_cli.device import resolve_precision
    from samba_cli.model.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(tiny_model(), tmp_path)
    exact = load_checkpoint(tmp_path)
    int8 = load_checkpoint(tmp_path, int8=True)
    assert not any(isinstance(m, torch.nn.Linear) for m in int8.decoder.modules())
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.decoder.modules())
    assert any(isinstance(m, torch.nn.Linear) for m in int8.encoder.modules())
    feats = torch.randn(2, TINY.n_mels, 80)
    with torch.inference_mode():
        a, lengths = exact.encode(feats, None)
        b, _ = int8.encode(feats, None)
        tokens = torch.randint(4, TINY.vocab_size, (2, 6))
        la, lb = exact.decode(tokens, a, lengths), int8.decode(tokens, b, lengths)
    assert torch.equal(a, b)
    assert (la.log_softmax(-1) - lb.log_softmax(-1)).abs().max() < 0.5
    assert resolve_precision("int8", torch.device("cpu")) == (torch.float32, True)
    assert resolve_precision("auto", torch.device("cpu")) == (torch.float32, False)
    with pytest.raises(BackendError, match="CPU only"):
        resolve_precision("int8", torch.device("cuda"))
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # a torch without eager quantization
    with pytest.raises(BackendError, match="dtype int8 needs torch.ao.quantization"):
        load_checkpoint(tmp_path, int8=True)
