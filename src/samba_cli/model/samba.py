"""Samba-ASR: Mamba-2 encoder with a CTC head and a Mamba-2 decoder with cross-attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samba_cli.model.config import ModelConfig
from samba_cli.model.decoder import Decoder, DecoderState
from samba_cli.model.encoder import Encoder
from samba_cli.model.mamba import Mamba2Mixer
from samba_cli.ops import get_ops, resolve_backend


@dataclass
class ModelOutput:
    ctc_logits: torch.Tensor | None  # (B, S, vocab + 1), blank last; None without a CTC head
    encoder_lengths: torch.Tensor  # (B,) valid encoder frames
    logits: torch.Tensor  # (B, L, vocab) decoder logits


class SambaASR(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.ctc_head = nn.Linear(config.d_model, config.vocab_size + 1) if config.ctc_head else None
        self.decoder = Decoder(config)
        self.backend = "torch"

    def set_backend(self, backend: str = "auto") -> str:
        """Choose the SSD backend for every Mamba-2 mixer; returns the concrete backend."""
        device = next(self.parameters()).device
        concrete = resolve_backend(backend, device)
        ops = get_ops(concrete)
        for module in self.modules():
            if isinstance(module, Mamba2Mixer):
                module.ops = ops
        self.backend = concrete
        return concrete

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (B, n_mels, T) -> encoder states (B, S, D) and valid lengths (B,)."""
        return self.encoder(features, lengths)

    def ctc_logits(self, states: torch.Tensor) -> torch.Tensor:
        """states: (B, S, D) -> (B, S, vocab + 1); the blank is index ``config.blank_id``."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head")
        return self.ctc_head(states)

    @staticmethod
    def frame_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
        return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]

    def decode(self, tokens: torch.Tensor, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder: tokens (B, L) -> logits (B, L, vocab)."""
        return self.decoder(tokens, states, self.frame_mask(lengths, states.shape[1]))

    def allocate_state(self, states: torch.Tensor, lengths: torch.Tensor, group: int = 1) -> DecoderState:
        """Decoding state for a batch of segments: states (B, S, D), lengths (B,); ``group`` hypotheses per
        segment (B x group rows, e.g. the beams of a beam search) share the segment's encoder memory."""
        return self.decoder.allocate_state(states, self.frame_mask(lengths, states.shape[1]), group)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """tokens (B,) -> next-token logits (B, vocab)."""
        return self.decoder.step(tokens, state)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, tokens: torch.Tensor) -> ModelOutput:
        states, enc_lengths = self.encode(features, lengths)
        ctc = self.ctc_logits(states) if self.ctc_head is not None else None
        return ModelOutput(ctc, enc_lengths, self.decode(tokens, states, enc_lengths))
