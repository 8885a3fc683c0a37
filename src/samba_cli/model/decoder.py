"""Decoder: token embedding -> [causal Mamba-2, cross-attention to the encoder, MLP] blocks -> norm -> LM head.

``forward`` runs a whole token sequence (training, teacher forcing); ``allocate_state`` + ``step`` decode one token at
a time with O(1) memory per Mamba layer and cross-attention keys/values computed once per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samba_cli.model.config import ModelConfig
from samba_cli.model.encoder import GatedMLP, mixer_kwargs
from samba_cli.model.mamba import Mamba2Mixer, MixerState


class CrossAttention(nn.Module):
    """Multi-head attention from decoder positions to encoder frames (keys/values cacheable per segment)."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory: (B, S, D) -> keys, values: (B, H, S, D/H)."""
        b, s, d = memory.shape
        kv = self.kv_proj(memory).view(b, s, 2, self.heads, d // self.heads)
        return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)

    def forward(
        self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """x: (B, L, D); keys, values: (M, H, S, D/H) and mask: (M, S) True for valid frames, with B a multiple of
        M -> (B, L, D). Rows g*G to g*G + G - 1 of x (G = B / M) all attend to memory g: the beams of one
        segment, or candidates scored against one segment, read its keys and values once, as G*L queries."""
        b, length, d = x.shape
        memories = keys.shape[0]
        if b % memories:
            raise ValueError(f"{b} query rows cannot share {memories} memories")
        q = (
            self.q_proj(x)
            .view(memories, (b // memories) * length, self.heads, d // self.heads)
            .transpose(1, 2)
        )
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None, None, :])
        return self.out_proj(out.transpose(1, 2).reshape(b, length, d))


class DecoderBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(config.d_model, eps=1e-5)
        self.mixer = Mamba2Mixer(**mixer_kwargs(config))
        self.norm2 = nn.RMSNorm(config.d_model, eps=1e-5)
        self.cross = CrossAttention(config.d_model, config.cross_attention_heads)
        self.norm3 = nn.RMSNorm(config.d_model, eps=1e-5)
        self.mlp = GatedMLP(config.d_model, config.d_mlp)

    def forward(self, x, keys, values, mask):
        x = x + self.mixer(self.norm1(x))
        x = x + self.cross(self.norm2(x), keys, values, mask)
        return x + self.mlp(self.norm3(x))

    def step(self, x, state: MixerState, keys, values, mask):
        """x: (B, D) one token."""
        x = x + self.mixer.step(self.norm1(x), state)
        x = x + self.cross(self.norm2(x).unsqueeze(1), keys, values, mask).squeeze(1)
        return x + self.mlp(self.norm3(x))


@dataclass
class DecoderState:
    """Recurrent decoding state for a batch of hypotheses: B = M x group rows over M encoder memories."""

    mixers: list[MixerState]  # one per decoder layer, B rows
    keys: list[torch.Tensor]  # per layer (M, H, S, D/H), computed once per segment
    values: list[torch.Tensor]
    mask: torch.Tensor  # (M, S) valid encoder frames
    group: int = 1  # rows per memory: rows g*group ... g*group + group - 1 read memory g

    @property
    def batch_size(self) -> int:
        return self.mask.shape[0] * self.group

    def reorder(self, index: torch.Tensor, memory: bool = True) -> None:
        """Keep the hypotheses at ``index`` (B',), e.g. the surviving beams; rows may repeat. ``memory=False``
        when every row keeps its own encoder memory (beams of one segment trading places): only the recurrent
        states move, the cross-attention keys, values and mask stay. Rows that share a memory (``group`` > 1)
        can only trade places among themselves (``memory=False``)."""
        if memory and self.group != 1:
            raise ValueError("rows that share an encoder memory cannot move it: reorder with memory=False")
        for mixer in self.mixers:
            mixer.reorder(index)
        if not memory:
            return
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.mask = self.mask.index_select(0, index)

    def keep(self, memories: torch.Tensor) -> None:
        """Keep the segments at ``memories`` (M',), in that order, each with its ``group`` rows; the others (e.g.
        finished ones) leave the batch, which shrinks to M' x group rows."""
        self.keys = [k.index_select(0, memories) for k in self.keys]
        self.values = [v.index_select(0, memories) for v in self.values]
        self.mask = self.mask.index_select(0, memories)
        rows = group_rows(memories, self.group)
        for mixer in self.mixers:
            mixer.reorder(rows)


def group_rows(memories: torch.Tensor, group: int) -> torch.Tensor:
    """The rows of the hypotheses of segments ``memories`` (M',) when each segment has ``group`` consecutive rows
    -> (M' x group,)."""
    return (memories[:, None] * group + torch.arange(group, device=memories.device)).reshape(-1)


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=1e-5)
        self.lm_head = (
            None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        )

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return F.linear(x, self.embed.weight) if self.lm_head is None else self.lm_head(x)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """tokens: (B, L), memory: (M, S, D), memory_mask: (M, S) -> logits (B, L, vocab), with B a multiple of
        M: each memory is shared by B / M consecutive sequences (e.g. a memory of batch 1 by all B), its keys and
        values computed and read once."""
        x = self.embed(tokens)
        for block in self.blocks:
            keys, values = block.cross.keys_values(memory)
            x = block(x, keys, values, memory_mask)
        return self._logits(x)

    def allocate_state(self, memory: torch.Tensor, memory_mask: torch.Tensor, group: int = 1) -> DecoderState:
        """State for ``group`` hypotheses per memory: memory (M, S, D), memory_mask (M, S) -> M x group rows."""
        batch = memory.shape[0] * group
        kvs = [block.cross.keys_values(memory) for block in self.blocks]
        return DecoderState(
            mixers=[b.mixer.allocate_state(batch, memory.device, memory.dtype) for b in self.blocks],
            keys=[k for k, _ in kvs],
            values=[v for _, v in kvs],
            mask=memory_mask,
            group=group,
        )

    def step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """tokens: (B,) the previous token of each hypothesis -> logits (B, vocab); ``state`` advances."""
        x = self.embed(tokens)
        for i, block in enumerate(self.blocks):
            x = block.step(x, state.mixers[i], state.keys[i], state.values[i], state.mask)
        return self._logits(x)
