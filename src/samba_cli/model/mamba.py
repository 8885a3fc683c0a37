"""The Mamba-2 mixer, with parameter names and shapes equal to ``mamba_ssm.modules.mamba2.Mamba2``.

The SSD scan comes from a backend (:mod:`samba_cli.ops`): pure PyTorch or the fused Triton kernels. Everything else
(projections, causal depthwise convolution, gated RMSNorm) is plain PyTorch in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samba_cli.ops import SSDOps, get_ops


class GatedRMSNorm(nn.Module):
    """RMSNorm(x * silu(z)) * weight, normalised per group (mamba_ssm's RMSNormGated, norm_before_gate=False)."""

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float() * F.silu(z.float())
        shape = x.shape
        x = x.view(*shape[:-1], -1, self.group_size)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x.view(shape) * self.weight.float()).to(dtype)


@dataclass
class MixerState:
    conv: torch.Tensor  # (B, conv_dim, d_conv): the last d_conv inputs of the depthwise convolution
    ssm: torch.Tensor  # (B, nheads, headdim, d_state), float32

    def reorder(self, index: torch.Tensor) -> None:
        self.conv = self.conv.index_select(0, index)
        self.ssm = self.ssm.index_select(0, index)


class Mamba2Mixer(nn.Module):
    """Mamba-2 mixer (ngroups B/C groups, gated RMSNorm, no bias), causal in time."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 32,
        ngroups: int = 1,
        chunk_size: int = 64,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.headdim = headdim
        self.ngroups = ngroups
        self.nheads = self.d_inner // headdim
        self.chunk_size = chunk_size
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        self.ops: SSDOps = get_ops("torch")

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            kernel_size=d_conv,
            groups=self.conv_dim,
            padding=d_conv - 1,
            bias=True,
        )
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True
        self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // ngroups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def _split(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def _split_xbc(self, xbc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gn = self.ngroups * self.d_state
        return torch.split(xbc, [self.d_inner, gn, gn], dim=-1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, L, d_model) -> (B, L, d_model)."""
        batch, length, _ = u.shape
        z, xbc, dt = self._split(self.in_proj(u))
        xbc = F.silu(self.conv1d(xbc.transpose(1, 2))[..., :length].transpose(1, 2))
        x, B, C = self._split_xbc(xbc)
        y, _ = self.ops.chunked(
            x.reshape(batch, length, self.nheads, self.headdim),
            dt,
            -torch.exp(self.A_log.float()),
            B.reshape(batch, length, self.ngroups, self.d_state),
            C.reshape(batch, length, self.ngroups, self.d_state),
            self.chunk_size,
            D=self.D,
            dt_bias=self.dt_bias,
        )
        y = self.norm(y.reshape(batch, length, self.d_inner), z)
        return self.out_proj(y)

    def allocate_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> MixerState:
        return MixerState(
            conv=torch.zeros(batch, self.conv_dim, self.d_conv, device=device, dtype=dtype),
            ssm=torch.zeros(
                batch, self.nheads, self.headdim, self.d_state, device=device, dtype=torch.float32
            ),
        )

    def step(self, u: torch.Tensor, state: MixerState) -> torch.Tensor:
        """One token. u: (B, d_model) -> (B, d_model); ``state`` is updated in place (O(1) memory)."""
        batch = u.shape[0]
        z, xbc, dt = self._split(self.in_proj(u))
        state.conv.copy_(torch.roll(state.conv, shifts=-1, dims=-1))
        state.conv[:, :, -1] = xbc
        xbc = (state.conv * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias
        x, B, C = self._split_xbc(F.silu(xbc))
        y = self.ops.step(
            state.ssm,
            x.reshape(batch, self.nheads, self.headdim),
            dt,
            -torch.exp(self.A_log.float()),
            B.reshape(batch, self.ngroups, self.d_state),
            C.reshape(batch, self.ngroups, self.d_state),
            D=self.D,
            dt_bias=self.dt_bias,
        )
        return self.out_proj(self.norm(y.reshape(batch, self.d_inner), z))


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of x (B, L, D) within its own length; padding stays at the end."""
    if lengths is None:
        return x.flip(1)
    length = x.shape[1]
    t = torch.arange(length, device=x.device).unsqueeze(0)  # (1, L)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (B, L)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class BidirectionalMamba2(nn.Module):
    """A forward Mamba-2 pass plus a time-reversed one (own weights); their outputs are summed."""

    def __init__(self, **mixer_kwargs) -> None:
        super().__init__()
        self.forward_mixer = Mamba2Mixer(**mixer_kwargs)
        self.backward_mixer = Mamba2Mixer(**mixer_kwargs)

    def backward_half(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return reverse_padded(self.backward_mixer(reverse_padded(x, lengths)), lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, D), lengths: (B,) valid frames -> (B, L, D)."""
        return self.forward_mixer(x) + self.backward_half(x, lengths)
