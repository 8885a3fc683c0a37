"""Encoder: log-mel -> convolutional subsampling -> bidirectional Mamba-2 blocks -> norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samba_cli.model.config import ModelConfig
from samba_cli.model.mamba import BidirectionalMamba2, Mamba2Mixer


def mixer_kwargs(config: ModelConfig) -> dict:
    return {
        "d_model": config.d_model,
        "d_state": config.d_state,
        "d_conv": config.d_conv,
        "expand": config.expand,
        "headdim": config.headdim,
        "ngroups": config.ngroups,
        "chunk_size": config.chunk_size,
    }


class GatedMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_hidden, bias=False)
        self.up = nn.Linear(d_model, d_hidden, bias=False)
        self.down = nn.Linear(d_hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Subsampling(nn.Module):
    """log2(factor) stride-2 1-D convolutions (kernel 3, padding 1), GELU after each."""

    def __init__(self, n_mels: int, d_model: int, factor: int) -> None:
        super().__init__()
        layers = int(math.log2(factor))
        channels = [n_mels] + [d_model] * layers
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1], kernel_size=3, stride=2, padding=1) for i in range(layers)
        )
        if not self.convs:
            self.proj = nn.Linear(n_mels, d_model)

    @staticmethod
    def output_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
        for _ in range(int(math.log2(factor))):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """features: (B, n_mels, T) -> (B, T // factor (rounded up), d_model).

        With ``lengths`` (B,) the frames past each sequence's end are zeroed before every convolution, so a
        padded sequence gives the same valid frames as the sequence on its own (where the convolution pads
        with zeros).
        """
        if not self.convs:
            return self.proj(features.transpose(1, 2))
        x = features
        for conv in self.convs:
            if lengths is not None:
                x = x * (torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]).unsqueeze(1)
                lengths = self.output_lengths(lengths, 2)
            x = F.gelu(conv(x))
        return x.transpose(1, 2)


class EncoderBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(config.d_model, eps=1e-5)
        kwargs = mixer_kwargs(config)
        self.mixer = BidirectionalMamba2(**kwargs) if config.bidirectional else Mamba2Mixer(**kwargs)
        self.norm2 = nn.RMSNorm(config.d_model, eps=1e-5)
        self.mlp = GatedMLP(config.d_model, config.d_mlp)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + (self.mixer(h, lengths) if isinstance(self.mixer, BidirectionalMamba2) else self.mixer(h))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.subsampling = Subsampling(config.n_mels, config.d_model, config.subsampling)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=1e-5)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (B, n_mels, T), lengths: (B,) mel frames -> states (B, S, D), lengths (B,) in frames."""
        x = self.subsampling(features, None if lengths is None else lengths.to(features.device))
        if lengths is None:
            out_lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        else:
            out_lengths = Subsampling.output_lengths(lengths.to(x.device), self.config.subsampling)
            mask = torch.arange(x.shape[1], device=x.device)[None, :] < out_lengths[:, None]
            x = x * mask.unsqueeze(-1).to(x.dtype)
        seq_lengths = None if lengths is None else out_lengths
        for block in self.blocks:
            x = block(x, seq_lengths)
        return self.norm(x), out_lengths
