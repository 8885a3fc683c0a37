import pytest
import torch

from samba_cli.model.mamba import BidirectionalMamba2, Mamba2Mixer, reverse_padded
from samba_cli.ops.ssd import ssd_chunked, ssd_naive


def random_inputs(b=2, length=37, h=4, p=3, g=2, n=5, dtype=torch.float32):
    x = torch.randn(b, length, h, p, dtype=dtype)
    dt = torch.randn(b, length, h, dtype=dtype)
    A = -torch.rand(h) * 4 - 0.1
    B = torch.randn(b, length, g, n, dtype=dtype)
    C = torch.randn(b, length, g, n, dtype=dtype)
    D = torch.randn(h)
    dt_bias = torch.randn(h) * 0.5
    return x, dt, A, B, C, D, dt_bias


@pytest.mark.parametrize("chunk_size", [1, 4, 8, 16, 32, 64])
@pytest.mark.parametrize("length", [1, 13, 37, 64])
def test_chunked_equals_naive_recurrence(chunk_size, length):
    x, dt, A, B, C, D, dt_bias = random_inputs(length=length)
    init = torch.randn(2, 4, 3, 5)
    y_ref, s_ref = ssd_naive(x, dt, A, B, C, D=D, dt_bias=dt_bias, initial_state=init)
    y, s = ssd_chunked(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias, initial_state=init)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s, s_ref, atol=1e-4, rtol=1e-4)


def test_chunked_can_fail_on_wrong_decay():
    # Guards the test above: a perturbed A must be detected.
    x, dt, A, B, C, D, dt_bias = random_inputs()
    y_ref, _ = ssd_naive(x, dt, A, B, C, D=D, dt_bias=dt_bias)
    y, _ = ssd_chunked(x, dt, A * 1.01, B, C, 8, D=D, dt_bias=dt_bias)
    assert not torch.allclose(y, y_ref, atol=1e-4, rtol=1e-4)


def test_chunked_bfloat16_close_to_float32():
    x, dt, A, B, C, D, dt_bias = random_inputs(length=50)
    y32, _ = ssd_chunked(x, dt, A, B, C, 16, D=D, dt_bias=dt_bias)
    y16, _ = ssd_chunked(
        *(t.bfloat16() for t in (x, dt)), A, B.bfloat16(), C.bfloat16(), 16, D=D, dt_bias=dt_bias
    )
    assert y16.dtype == torch.bfloat16
    err = (y16.float() - y32).abs().max() / y32.abs().max()
    assert err < 0.05


def test_mixer_parameter_names_match_mamba_ssm():
    mixer = Mamba2Mixer(d_model=64, d_state=16, headdim=16, expand=2, ngroups=1)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    d_inner, nheads, conv_dim = 128, 8, 128 + 2 * 16
    assert shapes == {
        "in_proj.weight": (2 * d_inner + 2 * 16 + nheads, 64),
        "conv1d.weight": (conv_dim, 1, 4),
        "conv1d.bias": (conv_dim,),
        "dt_bias": (nheads,),
        "A_log": (nheads,),
        "D": (nheads,),
        "norm.weight": (d_inner,),
        "out_proj.weight": (64, d_inner),
    }


def test_mixer_is_causal():
    mixer = Mamba2Mixer(d_model=16, d_state=4, headdim=8, chunk_size=4)
    u = torch.randn(1, 20, 16)
    u2 = u.clone()
    u2[:, 12:] = torch.randn(1, 8, 16)
    torch.testing.assert_close(mixer(u)[:, :12], mixer(u2)[:, :12])


def test_mixer_step_matches_forward():
    mixer = Mamba2Mixer(d_model=16, d_state=4, headdim=8, chunk_size=4)
    u = torch.randn(3, 11, 16)
    full = mixer(u)
    state = mixer.allocate_state(3, u.device, u.dtype)
    steps = torch.stack([mixer.step(u[:, t], state) for t in range(11)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)


def test_backward_half_is_forward_mixer_on_reversed_input():
    bi = BidirectionalMamba2(d_model=16, d_state=4, headdim=8, chunk_size=4)
    x = torch.randn(2, 15, 16)
    expected = bi.backward_mixer(x.flip(1)).flip(1)
    torch.testing.assert_close(bi.backward_half(x), expected)
    # Padded batch: each sequence is reversed within its own length.
    lengths = torch.tensor([15, 9])
    out = bi.backward_half(x, lengths)
    short = bi.backward_mixer(x[1:, :9].flip(1)).flip(1)
    torch.testing.assert_close(out[1:, :9], short, atol=1e-5, rtol=1e-4)


def test_reverse_padded_is_an_involution():
    x = torch.randn(3, 7, 2)
    lengths = torch.tensor([7, 4, 1])
    torch.testing.assert_close(reverse_padded(reverse_padded(x, lengths), lengths), x)
    torch.testing.assert_close(reverse_padded(x, lengths)[1, :4], x[1, :4].flip(0))
