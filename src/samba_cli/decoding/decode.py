"""One decoding entry point for transcription and evaluation: segments' encoder frames -> hypotheses, with the
search the resolved options choose."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from samba_cli.decoding.attention import Hypothesis, beam_search, greedy_search
from samba_cli.decoding.ctc import ctc_decode
from samba_cli.decoding.stepper import MakeStepper
from samba_cli.model import SambaASR
from samba_cli.options import ResolvedDecode


@dataclass(frozen=True)
class Encoded:
    """One segment as the searches read it."""

    states: torch.Tensor  # (T, D) encoder frames the attention decoder reads: the segment and its margins
    frames: int  # encoder frames of the segment itself (its length in time)
    ctc: (
        torch.Tensor | None
    )  # (frames, V + 1) CTC log-posteriors of the segment; None: a model without CTC head


def decode(
    model: SambaASR,
    segments: list[Encoded],
    options: ResolvedDecode,
    pieces: list[str],
    make_stepper: MakeStepper | None = None,
) -> list[Hypothesis]:
    """One hypothesis per segment, decoded together as ``options`` ask. ``pieces``: the tokenizer's pieces by id
    (CTC beam search joins them into words); ``make_stepper``: the decoder steppers (CUDA graphs), see
    :func:`decoder_frames`. A hypothesis is at most ``max_tokens_per_second`` times the segment's seconds long."""
    if options.decoder == "ctc":
        return ctc_decode(
            model, [(s.ctc, s.frames, s.states) for s in segments], options, pieces, make_stepper
        )
    lengths = torch.tensor([s.states.shape[0] for s in segments], device=segments[0].states.device)
    padded = torch.nn.utils.rnn.pad_sequence([s.states for s in segments], batch_first=True)
    max_tokens = [
        max(1, math.ceil(s.frames * model.config.frame_seconds * options.max_tokens_per_second))
        for s in segments
    ]
    if options.beam_size == 1:
        return greedy_search(
            model, padded, lengths, max_tokens, max_repeats=options.max_repeats, make_stepper=make_stepper
        )
    return beam_search(
        model,
        padded,
        lengths,
        max_tokens,
        beam_size=options.beam_size,
        length_penalty=options.length_penalty,
        max_repeats=options.max_repeats,
        make_stepper=make_stepper,
    )


def decoder_frames(model: SambaASR, seconds: float) -> int:
    """Most encoder frames one segment of ``seconds`` (margins included) hands the decoder, rounded up to 64: the
    size the steppers (and their CUDA graphs) are built for."""
    frames = math.ceil(seconds / model.config.frame_seconds) + 2
    return -(-frames // 64) * 64
