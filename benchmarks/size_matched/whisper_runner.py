"""A Whisper model of a samba preset's size, and its forced decoding as the transformers ASR pipeline runs it.

transformers is imported lazily: the rest of the harness runs without it.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from samba_cli.features import SAMPLE_RATE
from samba_cli.model import ModelConfig, SambaASR

from .forced import DecodeCounts, StageClock, best_seconds, pick, rows_to_host, suppress_mask
from .options import (
    WHISPER_CHUNK_SECONDS,
    WHISPER_HEAD_DIM,
    WHISPER_PROMPT,
    BenchOptions,
    resolve_preset,
    token_budget,
)
from .results import ModelInfo, StepResult


def whisper_config(samba: ModelConfig, encoder_layers: int):
    """A WhisperConfig with samba's width, decoder depth and vocabulary, and ``encoder_layers`` encoder layers."""
    from transformers import WhisperConfig

    heads = max(1, samba.d_model // WHISPER_HEAD_DIM)
    return WhisperConfig(
        vocab_size=samba.vocab_size,
        num_mel_bins=80,
        d_model=samba.d_model,
        encoder_layers=encoder_layers,
        decoder_layers=samba.decoder_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * samba.d_model,
        decoder_ffn_dim=4 * samba.d_model,
        pad_token_id=samba.pad_id,
        bos_token_id=samba.bos_id,
        eos_token_id=samba.eos_id,
        decoder_start_token_id=samba.bos_id,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )


def _whisper_parameters(config) -> int:
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        return sum(p.numel() for p in WhisperForConditionalGeneration(config).parameters())


@functools.lru_cache(maxsize=8)
def matched_whisper_layers(preset: str) -> int:
    """Encoder layers that bring the Whisper model closest to the samba preset's parameter count.

    Width, heads (64 wide), decoder depth and vocabulary follow samba, so that decoding costs compare layer for
    layer; only the encoder depth is free. Whisper's 51865-token vocabulary is not used: both models share
    samba's, and pay the same for the output layer.
    """
    samba = resolve_preset(preset)
    with torch.device("meta"):
        target = SambaASR(samba).num_parameters()
    one, two = (_whisper_parameters(whisper_config(samba, n)) for n in (1, 2))  # linear in the depth
    return max(1, round((target - one) / (two - one)) + 1)


def build_whisper(preset: str, device: torch.device, dtype: torch.dtype):
    from transformers import WhisperForConditionalGeneration

    config = whisper_config(resolve_preset(preset), matched_whisper_layers(preset))
    return WhisperForConditionalGeneration(config).eval().to(device=device, dtype=dtype)


def whisper_info(preset: str, model) -> ModelInfo:
    c = model.config
    shape = (
        f"d_model {c.d_model}, heads {c.encoder_attention_heads}, encoder {c.encoder_layers}, "
        f"decoder {c.decoder_layers}, ffn {c.encoder_ffn_dim}, vocab {c.vocab_size}, "
        f"attention {c._attn_implementation}"
    )
    return ModelInfo("whisper", preset, sum(p.numel() for p in model.parameters()), shape)


def iter_chunks(blocks: Iterable[np.ndarray], chunk: int, stride: int) -> Iterator[np.ndarray]:
    """Chunks of ``chunk`` samples every ``chunk - 2 * stride`` samples, from a stream of blocks.

    The cuts of transformers' ``chunk_iter`` (the last chunk may be shorter; a final chunk no longer than
    ``stride`` is dropped), without holding the whole array: at most one chunk plus one block.
    """
    step = chunk - 2 * stride
    buffer = np.zeros(0, dtype=np.float32)
    first = True
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        while buffer.size > chunk:  # audio follows this chunk, so it is not the last one
            yield buffer[:chunk].copy()
            buffer, first = buffer[step:], False
    if buffer.size and (first or buffer.size > stride):
        yield buffer


class WhisperRunner:
    """Forced end-to-end transcription with Whisper: chunked and batched as the transformers ASR pipeline."""

    def __init__(self, model, options: BenchOptions) -> None:
        from transformers import WhisperFeatureExtractor

        self.model = model
        self.options = options
        self.param = next(model.parameters())
        self.extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        c = model.config
        self.suppress = suppress_mask(
            c.vocab_size, (c.bos_token_id, c.eos_token_id, c.pad_token_id), self.param.device
        )
        self.prompt = torch.arange(WHISPER_PROMPT, device=self.param.device) + 4  # four ordinary ids
        self.cache_kw = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    def prepare(self) -> None:
        """Nothing to capture ahead of a timed run."""

    def features(self, chunks: list[np.ndarray]) -> torch.Tensor:
        """Per chunk, as the pipeline's preprocess does -> (B, 80, 3000) on the device."""
        feats = [
            self.extractor(
                c, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
            ).input_features
            for c in chunks
        ]
        return torch.cat(feats).to(self.param.device, self.param.dtype)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.model.encoder(features).last_hidden_state

    def _forward(self, encoded: torch.Tensor, ids: torch.Tensor, cache):
        from transformers.modeling_outputs import BaseModelOutput

        kwargs = {self.cache_kw: cache} if cache is not None else {}
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
            decoder_input_ids=ids,
            use_cache=True,
            **kwargs,
        )
        return out.logits[:, -1], getattr(out, self.cache_kw)  # transformers 5 renamed it `cache`

    def prefill(self, encoded: torch.Tensor, prefix: int = 0) -> tuple[torch.Tensor, object]:
        """The 4-token prompt (+ ``prefix`` teacher-forced tokens) -> last logits (B, V) and the KV cache."""
        ids = torch.cat([self.prompt, self.prompt.new_full((prefix,), 5)]).expand(encoded.shape[0], -1)
        return self._forward(encoded, ids, None)

    def extend(self, encoded: torch.Tensor, logits: torch.Tensor, cache, steps: int) -> torch.Tensor:
        """``steps`` forced tokens (B, steps) from the prefilled ``logits`` and ``cache``: steps - 1 passes."""
        out = torch.empty(encoded.shape[0], steps, dtype=torch.long, device=encoded.device)
        for i in range(steps):
            out[:, i] = pick(logits, self.suppress)
            if i + 1 < steps:
                logits, cache = self._forward(encoded, out[:, i : i + 1], cache)
        return out

    def forced_decode(self, encoded: torch.Tensor, steps: int) -> torch.Tensor:
        """encoded (B, 1500, D) -> (B, steps) tokens after the prompt."""
        return self.extend(encoded, *self.prefill(encoded), steps)

    def run_batch(self, chunks: list[np.ndarray], clock: StageClock) -> int:
        with clock.stage("features"):
            feats = self.features(chunks)
        with clock.stage("encoder"):
            encoded = self.encode(feats)
        with clock.stage("decode"):
            budgets = [token_budget(c.size / SAMPLE_RATE, self.options.tokens_per_second) for c in chunks]
            return rows_to_host(self.forced_decode(encoded, max(budgets)), budgets)

    @torch.inference_mode()
    def run(self, blocks: Iterable[np.ndarray], clock: StageClock) -> DecodeCounts:
        chunk = round(WHISPER_CHUNK_SECONDS * SAMPLE_RATE)
        stride = round(self.options.whisper_stride_seconds * SAMPLE_RATE)
        batch: list[np.ndarray] = []
        chunks = tokens = 0
        for piece in iter_chunks(blocks, chunk, stride):
            batch.append(piece)
            chunks += 1
            if len(batch) == self.options.batch_size:
                tokens += self.run_batch(batch, clock)
                batch = []
        if batch:
            tokens += self.run_batch(batch, clock)
        return DecodeCounts(chunks, chunks, tokens)

    def encoder_call(self, seconds: float) -> tuple[Callable[[], object], int]:
        """A call that encodes random features of ``seconds`` of audio, and its number of 30 s windows.

        The windows (3000 frames each) are encoded ``batch_size`` at once.
        """
        windows = math.ceil(seconds / WHISPER_CHUNK_SECONDS)
        c, param = self.model.config, self.param
        feats = torch.randn(windows, c.num_mel_bins, 3000, device=param.device, dtype=param.dtype)
        return (lambda: [self.encode(b) for b in feats.split(self.options.batch_size)]), windows

    def time_steps(self, preset: str) -> list[StepResult]:
        """ms per forced step (decoder pass, mask, argmax).

        An untimed prefill first fills the KV cache to about the middle of a 30 s chunk's token budget.
        """
        param, options = self.param, self.options
        frames = self.model.config.max_source_positions
        middle = token_budget(WHISPER_CHUNK_SECONDS, options.tokens_per_second) // 2
        prefix = max(0, middle - options.step_count // 2)
        results = []
        for batch in options.step_batches:
            encoded = torch.randn(
                batch, frames, self.model.config.d_model, device=param.device, dtype=param.dtype
            )
            self.extend(encoded, *self.prefill(encoded, prefix), 4)  # warm-up
            logits, cache = self.prefill(encoded, prefix)
            seconds = best_seconds(
                lambda e=encoded, lg=logits, c=cache: self.extend(e, lg, c, options.step_count + 1),
                param.device,
                1,
            )
            ms = 1000 * seconds / options.step_count
            results.append(StepResult("whisper", preset, batch, frames, "eager", ms))
        return results
