"""Fused (mamba-ssm Triton) vs pure-PyTorch parity. Marked ``cuda``: skipped without a GPU."""

import importlib.util

import pytest
import torch

from samba_cli.model.mamba import Mamba2Mixer
from samba_cli.ops import get_ops
from tests.model_helpers import tiny_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None, reason="needs mamba-ssm"),
]


def _mixer_pair(**kwargs):
    torch_mixer = Mamba2Mixer(**kwargs).cuda()
    fused_mixer = Mamba2Mixer(**kwargs).cuda()
    fused_mixer.load_state_dict(torch_mixer.state_dict())
    fused_mixer.ops = get_ops("fused")
    return torch_mixer, fused_mixer


@pytest.mark.parametrize("length", [1, 100, 257, 2048])
def test_fused_mixer_forward_matches_torch(length):
    ref, fused = _mixer_pair(d_model=128, d_state=64, headdim=32, chunk_size=64)
    u = torch.randn(2, length, 128, device="cuda")
    torch.testing.assert_close(fused(u), ref(u), atol=2e-3, rtol=2e-3)


def test_fused_step_matches_torch():
    ref, fused = _mixer_pair(d_model=128, d_state=64, headdim=32, chunk_size=64)
    u = torch.randn(4, 20, 128, device="cuda")
    s_ref = ref.allocate_state(4, u.device, u.dtype)
    s_fused = fused.allocate_state(4, u.device, u.dtype)
    for t in range(20):
        torch.testing.assert_close(
            fused.step(u[:, t], s_fused), ref.step(u[:, t], s_ref), atol=1e-3, rtol=1e-3
        )


def test_weights_load_into_mamba_ssm_module():
    import sys
    import types

    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    from mamba_ssm.modules.mamba2 import Mamba2

    ours = Mamba2Mixer(d_model=128, d_state=64, headdim=32, chunk_size=64).cuda()
    theirs = Mamba2(d_model=128, d_state=64, headdim=32, chunk_size=64, use_mem_eff_path=False).cuda()
    theirs.load_state_dict(ours.state_dict())
    u = torch.randn(2, 300, 128, device="cuda")
    torch.testing.assert_close(theirs(u), ours(u), atol=2e-3, rtol=2e-3)


def test_fused_model_teacher_forcing_bfloat16():
    model = tiny_model().cuda().to(torch.bfloat16)
    model.set_backend("fused")
    feats = torch.randn(2, 16, 90, device="cuda", dtype=torch.bfloat16)
    lengths = torch.tensor([90, 70], device="cuda")
    states, enc_lengths = model.encode(feats, lengths)
    tokens = torch.randint(0, 40, (2, 8), device="cuda")
    full = model.decode(tokens, states, enc_lengths).float()
    state = model.allocate_state(states, enc_lengths)
    steps = torch.stack([model.step(tokens[:, t], state) for t in range(8)], dim=1).float()
    assert (steps - full).abs().max() < 0.05 * full.abs().max() + 0.05


def test_cuda_graph_decoding_matches_eager():
    from functools import partial

    from samba_cli.decoding.attention import beam_search, greedy_search
    from samba_cli.decoding.stepper import StepperFactory

    model = tiny_model().cuda()
    model.set_backend("auto")
    states, lengths = model.encode(
        torch.randn(3, 16, 120, device="cuda"), torch.tensor([120, 90, 60], device="cuda")
    )
    factory = StepperFactory(model, max_frames=64, cuda_graphs=True)
    for search in (
        partial(greedy_search, max_repeats=100),
        partial(beam_search, beam_size=2, length_penalty=1.0, max_repeats=100),
    ):
        eager = search(model, states, lengths, [12] * 3)
        graphed = search(model, states, lengths, [12] * 3, make_stepper=factory)
        assert [h.tokens for h in eager] == [h.tokens for h in graphed]
    assert factory._static, "a CUDA graph should have been captured"
