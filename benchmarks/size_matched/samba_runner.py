"""Samba-ASR under forced decoding: end to end through the pipeline's stages, the encoder, one decoder step."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from samba_cli.decoding.stepper import EagerStepper, StaticStepper, StepperFactory, bucket
from samba_cli.features import log_mel
from samba_cli.model import SambaASR
from samba_cli.options import SegmentOptions, WindowOptions
from samba_cli.pipeline import pipeline_decoder_frames
from samba_cli.segments import split_segments
from samba_cli.windows import iter_windows

from .forced import DecodeCounts, StageClock, best_seconds, pick, rows_to_host, suppress_mask
from .options import BenchOptions, resolve_preset, token_budget
from .results import ModelInfo, StepResult


def build_samba(preset: str, device: torch.device, dtype: torch.dtype, backend: str) -> SambaASR:
    model = SambaASR(resolve_preset(preset)).eval().to(device=device, dtype=dtype)
    model.set_backend(backend)
    return model


def samba_info(preset: str, model: SambaASR) -> ModelInfo:
    c = model.config
    shape = (
        f"d_model {c.d_model}, encoder {c.encoder_layers} bidirectional Mamba-2, decoder {c.decoder_layers}, "
        f"d_state {c.d_state}, vocab {c.vocab_size}, backend {model.backend}"
    )
    return ModelInfo("samba", preset, model.num_parameters(), shape)


class SambaRunner:
    """Forced end-to-end transcription with samba: the pipeline's stages, the decoder driven for a fixed budget."""

    def __init__(self, model: SambaASR, options: BenchOptions) -> None:
        self.model = model
        self.options = options
        self.param = next(model.parameters())
        self.segment_options = SegmentOptions()
        frames = pipeline_decoder_frames(model, self.segment_options)
        self.steppers = StepperFactory(model, frames, options.cuda_graphs)
        cfg = model.config
        self.suppress = suppress_mask(cfg.vocab_size, (cfg.bos_id, cfg.eos_id, cfg.pad_id), self.param.device)

    def prepare(self) -> None:
        """Capture the CUDA graphs of every batch bucket now, so that no capture falls in a timed run."""
        if not self.steppers.use_static:
            return
        d = self.model.config.d_model
        for rows in sorted({bucket(b) for b in range(1, self.options.batch_size + 1)}):
            states = torch.zeros(rows, 1, d, device=self.param.device, dtype=self.param.dtype)
            self.steppers(states, torch.ones(rows, dtype=torch.long, device=self.param.device))

    def window_segments(self, samples: np.ndarray, clock: StageClock) -> list[tuple[torch.Tensor, int]]:
        """One window -> (encoder states (S', D), token budget) per CTC segment, margins included."""
        cfg = self.model.config
        with clock.stage("features"):
            feats = log_mel(torch.from_numpy(samples).to(self.param.device), cfg.n_mels)
        with clock.stage("encoder"):
            states = self.model.encode(feats.unsqueeze(0).to(self.param.dtype))[0][0]
            blank = torch.softmax(self.model.ctc_logits(states).float(), dim=-1)[:, cfg.blank_id]
        spans = split_segments(blank, cfg.frame_seconds, self.segment_options)
        margin = round(self.segment_options.attention_margin_seconds / cfg.frame_seconds)
        out = []
        for span in spans:
            lo, hi = max(0, span.start - margin), min(states.shape[0], span.end + margin)
            budget = token_budget(span.length * cfg.frame_seconds, self.options.tokens_per_second)
            out.append((states[lo:hi], budget))
        return out

    def forced_decode(self, states: torch.Tensor, lengths: torch.Tensor, steps: int) -> torch.Tensor:
        """states (B, S, D), lengths (B,) -> (B, steps) greedy tokens with the special tokens suppressed."""
        stepper = self.steppers(states, lengths)
        tokens = torch.full((states.shape[0],), self.model.config.bos_id, device=states.device)
        out = torch.empty(states.shape[0], steps, dtype=torch.long, device=states.device)
        for i in range(steps):
            tokens = pick(stepper.step(tokens), self.suppress)
            out[:, i] = tokens
        return out

    def decode_batch(self, batch: list[tuple[torch.Tensor, int]], clock: StageClock) -> int:
        with clock.stage("decode"):
            lengths = torch.tensor([s.shape[0] for s, _ in batch], device=self.param.device)
            padded = torch.nn.utils.rnn.pad_sequence([s for s, _ in batch], batch_first=True)
            budgets = [b for _, b in batch]
            return rows_to_host(self.forced_decode(padded, lengths, max(budgets)), budgets)

    @torch.inference_mode()
    def run(self, blocks: Iterable[np.ndarray], clock: StageClock) -> DecodeCounts:
        window_options = WindowOptions(window_seconds=self.options.window_seconds, vad=self.options.vad)
        queue: list[tuple[torch.Tensor, int]] = []
        windows = segments = tokens = 0
        for window in iter_windows(blocks, window_options):
            windows += 1
            queue.extend(self.window_segments(window.samples, clock))
            while len(queue) >= self.options.batch_size:
                batch, queue = queue[: self.options.batch_size], queue[self.options.batch_size :]
                tokens += self.decode_batch(batch, clock)
                segments += len(batch)
        if queue:
            tokens += self.decode_batch(queue, clock)
            segments += len(queue)
        return DecodeCounts(windows, segments, tokens)

    def encoder_call(self, seconds: float) -> tuple[Callable[[], object], int]:
        """A call that encodes random features of ``seconds`` of audio in one window (batch 1), and 1 window."""
        n_frames = round(seconds * 100) + 1
        feats = torch.randn(
            1, self.model.config.n_mels, n_frames, device=self.param.device, dtype=self.param.dtype
        )
        return (lambda: self.model.encode(feats)), 1

    def time_steps(self, preset: str) -> list[StepResult]:
        """ms per forced step (step, suppress, argmax) at each batch, cross-attending to a full-length segment."""
        model, param, options = self.model, self.param, self.options
        frames = self.steppers.max_frames
        modes = ["eager"] + (["cuda_graph"] if param.device.type == "cuda" and options.cuda_graphs else [])
        results = []
        for batch in options.step_batches:
            states = torch.randn(batch, frames, model.config.d_model, device=param.device, dtype=param.dtype)
            lengths = torch.full((batch,), frames, device=param.device)
            for mode in modes:
                if mode == "eager":
                    stepper = EagerStepper(model, states, lengths)
                else:
                    stepper = StaticStepper(model, bucket(batch), frames, use_graph=True).load(
                        states, lengths
                    )
                tokens = torch.full((batch,), model.config.bos_id, device=param.device)

                def step(stepper=stepper, tokens=tokens) -> None:
                    tokens.copy_(pick(stepper.step(tokens), self.suppress))

                for _ in range(3):
                    step()
                seconds = best_seconds(
                    lambda step=step: [step() for _ in range(options.step_count)], param.device, 1
                )
                ms = 1000 * seconds / options.step_count
                results.append(StepResult("samba", preset, batch, frames, mode, ms))
        return results
