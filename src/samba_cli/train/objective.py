"""The joint CTC + attention objective."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samba_cli.model import ModelConfig, ModelOutput


@dataclass
class Losses:
    total: torch.Tensor  # scalar: ctc_weight x ctc + (1 - ctc_weight) x attention, what is backpropagated
    ctc: torch.Tensor  # scalar: CTC negative log-likelihood per target token
    attention: torch.Tensor  # scalar: label-smoothed cross-entropy per target token (including eos)
    tokens: int  # target tokens in the batch (without eos)


def decoder_io(
    tokens: torch.Tensor, lengths: torch.Tensor, config: ModelConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded transcripts (B, L) -> decoder input [bos, t1..tn] and target [t1..tn, eos], both (B, L + 1) and
    padded with pad_id."""
    batch, length = tokens.shape
    positions = torch.arange(length + 1, device=tokens.device)[None, :]
    bos = torch.full((batch, 1), config.bos_id, dtype=tokens.dtype, device=tokens.device)
    inputs = torch.cat([bos, tokens], dim=1)
    inputs = inputs.masked_fill(positions > lengths[:, None], config.pad_id)
    padded = torch.cat([tokens, torch.full_like(bos, config.pad_id)], dim=1)
    targets = padded.masked_fill(positions == lengths[:, None], config.eos_id)
    targets = targets.masked_fill(positions > lengths[:, None], config.pad_id)
    return inputs, targets


def joint_loss(
    out: ModelOutput,
    tokens: torch.Tensor,
    token_lengths: torch.Tensor,
    targets: torch.Tensor,
    config: ModelConfig,
    ctc_weight: float,
    label_smoothing: float,
    labelled: torch.Tensor | None = None,
) -> Losses:
    """Both losses of a forward pass (in float32), each normalised per target token.

    ``out`` comes from the model run on the decoder inputs of :func:`decoder_io`; ``targets`` are its targets.
    ``labelled`` (B,) bool leaves out the utterances without a transcript (None: every utterance counts); with
    none labelled both losses are zero (and still connected to the graph).
    """
    rows = tokens.shape[0]
    ctc_reduction = "sum"
    if labelled is not None and not bool(labelled.all()):
        targets = targets.masked_fill(~labelled[:, None], config.pad_id)
        token_lengths = token_lengths * labelled
        rows = int(labelled.sum())
        ctc_reduction = "none"
    n_tokens = int(token_lengths.sum())
    attention = F.cross_entropy(
        out.logits.float().flatten(0, 1),
        targets.flatten(),
        ignore_index=config.pad_id,
        label_smoothing=label_smoothing,
        reduction="sum",
    ) / max(1, n_tokens + rows)
    if out.ctc_logits is None:
        ctc = torch.zeros((), device=tokens.device)
    else:
        log_probs = out.ctc_logits.float().log_softmax(-1).transpose(0, 1)  # (S, B, V + 1)
        ctc = F.ctc_loss(
            log_probs,
            tokens,
            out.encoder_lengths,
            token_lengths,
            blank=config.blank_id,
            reduction=ctc_reduction,
            zero_infinity=True,
        )
        if ctc_reduction == "none":  # (B,): the unlabelled rows' all-blank losses are left out
            ctc = (ctc * labelled).sum()
        ctc = ctc / max(1, n_tokens)
    total = ctc_weight * ctc + (1.0 - ctc_weight) * attention
    return Losses(total, ctc.detach(), attention.detach(), n_tokens)
