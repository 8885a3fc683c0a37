"""Batched greedy decoding for validation and evaluation: CTC best path and attention decoder argmax."""

from __future__ import annotations

import torch

from samba_cli.model import SambaASR


def greedy_ctc(ctc_logits: torch.Tensor, lengths: torch.Tensor, blank_id: int) -> list[list[int]]:
    """ctc_logits: (B, S, V + 1), lengths: (B,) -> token ids per utterance (repeats merged, blanks dropped)."""
    best = ctc_logits.argmax(-1)  # (B, S)
    previous = torch.nn.functional.pad(best, (1, 0), value=blank_id)[:, :-1]
    keep = (best != blank_id) & (best != previous)
    keep &= torch.arange(best.shape[1], device=best.device)[None, :] < lengths[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep, strict=True)]


@torch.no_grad()
def greedy_attention(
    model: SambaASR, states: torch.Tensor, lengths: torch.Tensor, max_tokens: int = 448
) -> list[list[int]]:
    """Argmax decoding with the recurrent decoder. states: (B, S, D), lengths: (B,) -> token ids per utterance
    (without bos/eos). An utterance stops at eos, or after one token per encoder frame (at most ``max_tokens``)."""
    config = model.config
    batch = states.shape[0]
    limits = lengths.clamp(max=max_tokens)
    state = model.allocate_state(states, lengths)
    previous = torch.full((batch,), config.bos_id, dtype=torch.long, device=states.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=states.device)
    outputs: list[torch.Tensor] = []
    for step in range(int(limits.max())):
        token = model.step(previous, state).argmax(-1)
        finished |= (token == config.eos_id) | (step >= limits)
        token = token.masked_fill(finished, config.pad_id)
        outputs.append(token)
        if bool(finished.all()):
            break
        previous = token
    hyps = torch.stack(outputs, dim=1).tolist() if outputs else [[] for _ in range(batch)]
    return [[t for t in row if t != config.pad_id] for row in hyps]
