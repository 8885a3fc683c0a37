"""Decoder steppers: the one interface searches use to advance a batch of hypotheses by one token.

``EagerStepper`` calls ``model.step`` on a :class:`DecoderState`. ``StaticStepper`` keeps every state tensor in
fixed buffers sized for a batch bucket and a maximum number of encoder frames, so that on CUDA the step can be
captured once in a CUDA graph and replayed (a Mamba-2 decode step is launch-bound: graphs remove the launches).
Buckets are powers of two; a batch is padded up to its bucket, and one graph is kept per bucket.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

from samba_cli.model import SambaASR
from samba_cli.model.decoder import group_rows

logger = logging.getLogger(__name__)


class Stepper(Protocol):
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,) -> next-token logits (B, V)."""
        ...

    def reorder(self, index: torch.Tensor, memory: bool = True) -> None:
        """Keep hypotheses ``index`` (B,) (rows may repeat); the batch size stays B. ``memory=False``: each row
        keeps its own encoder memory (index moves rows among hypotheses of the same segment only), so only the
        recurrent state moves."""
        ...

    def keep(self, segments: torch.Tensor) -> None:
        """Keep the segments at ``segments`` (M',), in that order, with all their hypotheses; the others leave
        the batch, which shrinks to M' x group rows (searches drop finished segments so)."""
        ...


class MakeStepper(Protocol):
    def __call__(self, states: torch.Tensor, lengths: torch.Tensor, group: int = 1) -> Stepper:
        """A stepper for ``group`` hypotheses per segment of states (B, S, D), lengths (B,)."""
        ...


class EagerStepper:
    """``group`` hypotheses per segment (rows g*group ... g*group + group - 1) share its encoder memory."""

    def __init__(self, model: SambaASR, states: torch.Tensor, lengths: torch.Tensor, group: int = 1) -> None:
        self.model = model
        self.state = model.allocate_state(states, lengths, group)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.step(tokens, self.state)

    def reorder(self, index: torch.Tensor, memory: bool = True) -> None:
        self.state.reorder(index, memory)

    def keep(self, segments: torch.Tensor) -> None:
        self.state.keep(segments)


def bucket(n: int) -> int:
    """Smallest power of two >= n."""
    return 1 << max(0, (n - 1).bit_length())


class StaticStepper:
    """A decoder state in fixed buffers (bucket rows x ``frames`` encoder frames), optionally a CUDA graph."""

    def __init__(self, model: SambaASR, rows: int, frames: int, use_graph: bool) -> None:
        param = next(model.parameters())
        self.model = model
        self.rows = rows
        self.frames = frames
        memory = torch.zeros(rows, frames, model.config.d_model, device=param.device, dtype=param.dtype)
        mask = torch.zeros(rows, frames, dtype=torch.bool, device=param.device)
        mask[:, 0] = True  # padded rows attend to one zero frame: no NaN from an all-masked row
        self.state = model.decoder.allocate_state(memory, mask)
        self.tokens = torch.full((rows,), model.config.bos_id, dtype=torch.long, device=param.device)
        self.batch = 0
        self.group = 1
        self.graph: torch.cuda.CUDAGraph | None = None
        if use_graph:
            self._capture()

    @torch.inference_mode()
    def _capture(self) -> None:
        snapshot = self._snapshot()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up outside the graph (allocator, lazy kernel compilation)
                self.model.step(self.tokens, self.state)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.model.step(self.tokens, self.state)
        self._restore(snapshot)

    def _buffers(self) -> list[torch.Tensor]:
        s = self.state
        return [t for m in s.mixers for t in (m.conv, m.ssm)] + s.keys + s.values + [s.mask]

    def _snapshot(self) -> list[torch.Tensor]:
        return [t.clone() for t in self._buffers()]

    def _restore(self, snapshot: list[torch.Tensor]) -> None:
        for t, saved in zip(self._buffers(), snapshot, strict=True):
            t.copy_(saved)

    @torch.inference_mode()
    def load(self, states: torch.Tensor, lengths: torch.Tensor, group: int = 1) -> StaticStepper:
        """Start a new batch: states (B, S, D), ``group`` hypotheses per segment, B x group <= rows, S <= frames
        (each row holds its own copy of its memory: fixed buffers for a graph)."""
        if group != 1:
            states, lengths = states.repeat_interleave(group, dim=0), lengths.repeat_interleave(group, dim=0)
        b, s, _ = states.shape
        if b > self.rows or s > self.frames:
            raise ValueError(f"batch {b}x{s} does not fit the static buffers {self.rows}x{self.frames}")
        st = self.state
        for m in st.mixers:
            m.conv.zero_()
            m.ssm.zero_()
        for i, block in enumerate(self.model.decoder.blocks):
            k, v = block.cross.keys_values(states)
            st.keys[i].zero_()
            st.values[i].zero_()
            st.keys[i][:b, :, :s].copy_(k)
            st.values[i][:b, :, :s].copy_(v)
        st.mask.zero_()
        st.mask[b:, 0] = True
        st.mask[:b, :s] = torch.arange(s, device=states.device)[None, :] < lengths[:, None]
        self.batch = b
        self.group = group
        return self

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.tokens[: self.batch].copy_(tokens)
        if self.graph is not None:
            self.graph.replay()
            return self.logits[: self.batch]
        return self.model.step(self.tokens, self.state)[: self.batch]

    @torch.inference_mode()
    def reorder(self, index: torch.Tensor, memory: bool = True) -> None:
        full = torch.arange(self.rows, device=index.device)
        full[: index.numel()] = index  # the batch's rows; the padding rows stay
        recurrent = [t for m in self.state.mixers for t in (m.conv, m.ssm)]
        for t in self._buffers() if memory else recurrent:
            t.copy_(t.index_select(0, full))

    @torch.inference_mode()
    def keep(self, segments: torch.Tensor) -> None:
        """The kept rows move to the front of the buffers; the rest become padding (the graph's shape stays)."""
        rows = group_rows(segments, self.group)
        self.reorder(rows)
        self.batch = rows.numel()
        self.state.mask[self.batch :] = False
        self.state.mask[self.batch :, 0] = True


class StepperFactory:
    """Makes steppers for batches; on CUDA (unless disabled) static CUDA-graph steppers, cached per bucket."""

    def __init__(self, model: SambaASR, max_frames: int, cuda_graphs: bool = True) -> None:
        self.model = model
        self.max_frames = max_frames
        device = next(model.parameters()).device
        self.use_static = cuda_graphs and device.type == "cuda"
        self._static: dict[int, StaticStepper] = {}

    def __call__(self, states: torch.Tensor, lengths: torch.Tensor, group: int = 1) -> Stepper:
        """A stepper for ``group`` hypotheses per segment of states (B, S, D), lengths (B,)."""
        b, s, _ = states.shape
        if not self.use_static or s > self.max_frames:
            return EagerStepper(self.model, states, lengths, group)
        rows = bucket(b * group)
        if rows not in self._static:
            logger.debug("capturing a CUDA graph for decode batches of %d", rows)
            self._static[rows] = StaticStepper(self.model, rows, self.max_frames, use_graph=True)
        return self._static[rows].load(states, lengths, group)
