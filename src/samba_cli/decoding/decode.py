"""One decoding entry point for transcription and evaluation: segments' encoder frames -> hypotheses, with the
search the resolved options choose."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from samba_cli.decoding.attention import Hypothesis, search_segments
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
    attention = [(s.states, s.frames) for s in segments]
    return [hyps[0] for hyps in search_segments(model, attention, options.beam_size, options, make_stepper)]


def decoder_frames(model: SambaASR, seconds: float) -> int:
    """Most encoder frames one segment of ``seconds`` (margins included) hands the decoder, rounded up to 64: the
    size the steppers (and their CUDA graphs) are built for."""
    frames = math.ceil(seconds / model.config.frame_seconds) + 2
    return -(-frames // 64) * 64
