"""Speed and memory benchmark: Samba-ASR against a Whisper model of the same parameter count.

Both models have random weights, so neither can decode real text: each is forced to decode a fixed token budget
(``tokens_per_second`` x the seconds of audio in a segment or chunk) with end-of-text suppressed. The work done is
then the work of a real transcription of speech at that token rate.

Cases
    end to end   generated long audio -> tokens on the host; RTFx = audio seconds / wall seconds. Each case runs
                 in a fresh child process, so its peak memory (``ru_maxrss``; on CUDA ``max_memory_allocated``) is
                 its own.
                 samba:   windows (VAD off by default) -> log-mel -> encoder + CTC head -> CTC segments
                          (``split_segments``, the pipeline's) -> forced decoding in batches, through the pipeline's
                          decode steppers (CUDA graphs on CUDA).
                 whisper: 30 s chunks with the transformers ASR pipeline's default stride (chunk / 6 on each
                          side) -> WhisperFeatureExtractor per chunk (on the CPU, as the pipeline does) -> chunks
                          batched -> encoder -> forced decoding with the transformers KV cache.
    encoder      encoder time against audio length: samba in one long window, whisper in 30 s windows batched.
    step         decoder step latency at batch 1 and 16 (eager; samba also under a CUDA graph on CUDA).

Run ``samba bench`` (see :mod:`samba_cli.commands.bench`) or :func:`run_bench`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from samba_cli.features import SAMPLE_RATE, log_mel
from samba_cli.model import PRESETS, ModelConfig, SambaASR
from samba_cli.pipeline import TranscribeOptions, max_decoder_frames
from samba_cli.segments import SegmentOptions, split_segments
from samba_cli.stepper import EagerStepper, StaticStepper, StepperFactory, bucket
from samba_cli.windows import WindowOptions, iter_windows

logger = logging.getLogger(__name__)

MODELS = ("samba", "whisper")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WHISPER_CHUNK_SECONDS = 30.0  # Whisper's encoder takes exactly 30 s (3000 mel frames)
WHISPER_PROMPT = 4  # <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>
WHISPER_HEAD_DIM = 64  # Whisper's attention head width at every size
BENCH_PRESETS: dict[str, ModelConfig] = {
    # A few hundred thousand parameters, for smoke tests of the harness only.
    "micro": ModelConfig(
        d_model=64, encoder_layers=2, decoder_layers=1, d_state=16, headdim=16, chunk_size=32, vocab_size=128,
        cross_attention_heads=2,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class BenchOptions:
    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:N
    presets: tuple[str, ...] = ("tiny", "small")  # samba presets; each gets a Whisper of its parameter count
    minutes: tuple[float, ...] = (1.0, 10.0, 60.0)  # lengths of generated audio for the end-to-end cases
    models: tuple[str, ...] = MODELS  # which of samba / whisper to run
    dtype: str = "auto"  # auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16
    backend: str = "auto"  # samba SSD backend: auto (fused on CUDA with mamba-ssm), torch, fused
    tokens_per_second: float = 5.0  # forced decoding budget per second of audio, both models
    batch_size: int = 16  # segments (samba) or 30 s chunks (whisper) decoded together
    window_seconds: float = 300.0  # samba window length
    vad: bool = False  # samba VAD; off by default since the whisper pipeline has none
    whisper_stride_seconds: float = (
        5.0  # overlap on each side of a whisper chunk (transformers default: 30 / 6)
    )
    encoder_seconds: tuple[float, ...] = (30.0, 120.0, 300.0, 600.0)  # audio lengths of the encoder cases
    step_batches: tuple[int, ...] = (1, 16)  # batch sizes of the decoder step cases
    step_count: int = 64  # timed decoder steps per step case
    repeats: int = 3  # timed repeats of each encoder case (the best is kept)
    warmup_seconds: float | None = (
        None  # audio run end to end before timing; None: 20 s on CPU, 360 s on CUDA
    )
    cuda_graphs: bool = True  # samba decode steps replayed from CUDA graphs on CUDA (the pipeline's default)
    budget_seconds: float | None = None  # skip an end-to-end case predicted to overrun the time left
    threads: int | None = None  # torch CPU threads in each case (None: torch's default)
    seed: int = 0  # generated audio and random weights

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown models {unknown}: choose from {', '.join(MODELS)}")
        for name in self.presets:
            resolve_preset(name)
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}: choose auto, {', '.join(DTYPES)}")
        if not self.tokens_per_second > 0 or self.batch_size < 1 or self.repeats < 1 or self.step_count < 1:
            raise ValueError("tokens_per_second, batch_size, repeats and step_count must be positive")
        if any(m <= 0 for m in self.minutes) or any(s <= 0 for s in self.encoder_seconds):
            raise ValueError("audio lengths must be positive")
        if not 0 <= 2 * self.whisper_stride_seconds < WHISPER_CHUNK_SECONDS:
            raise ValueError(f"whisper_stride_seconds must be in [0, {WHISPER_CHUNK_SECONDS / 2})")
        if WHISPER_PROMPT + token_budget(WHISPER_CHUNK_SECONDS, self.tokens_per_second) > 448:
            raise ValueError("tokens_per_second too high: a 30 s Whisper chunk holds at most 444 tokens")

    @classmethod
    def from_dict(cls, data: dict) -> BenchOptions:
        tuples = {f.name for f in dataclasses.fields(cls) if str(f.type).startswith("tuple")}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


def resolve_preset(name: str) -> ModelConfig:
    """A samba preset (tiny, small, base) or a benchmark-only one (micro)."""
    config = PRESETS.get(name) or BENCH_PRESETS.get(name)
    if config is None:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join([*PRESETS, *BENCH_PRESETS])}")
    return config


def token_budget(seconds: float, tokens_per_second: float) -> int:
    """Forced tokens for ``seconds`` of audio."""
    return max(1, round(seconds * tokens_per_second))


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ModelInfo:
    model: str  # samba or whisper
    preset: str  # the samba preset this model was sized for
    parameters: int
    shape: str  # widths and depths, for the reader


@dataclass(frozen=True)
class EndToEndResult:
    model: str
    preset: str
    audio_seconds: float
    wall_seconds: float  # audio source -> forced tokens on the host
    rtfx: float  # audio_seconds / wall_seconds
    features_seconds: float  # log-mel (samba, on the device) or WhisperFeatureExtractor (whisper, on the CPU)
    encoder_seconds: float  # encoder (+ CTC head for samba)
    decode_seconds: float  # decoder states and forced steps, tokens copied to the host
    windows: int  # samba windows or whisper 30 s chunks
    segments: int  # decoder rows: samba segments or whisper chunks
    tokens: int  # forced tokens decoded (sum of the rows' budgets)
    baseline_rss_bytes: int | None  # child's peak RSS after building the model and the warm-up run
    peak_rss_bytes: int | None  # child's peak RSS at the end
    baseline_cuda_bytes: int | None  # CUDA memory allocated after the warm-up (weights, graphs)
    peak_cuda_bytes: int | None  # torch.cuda.max_memory_allocated over the timed run
    cuda_graphs: bool  # samba decode steps replayed from CUDA graphs


@dataclass(frozen=True)
class EncoderResult:
    model: str
    preset: str
    audio_seconds: float
    windows: int  # 1 long samba window, or the number of whisper 30 s windows
    seconds: float  # best of ``repeats``


@dataclass(frozen=True)
class StepResult:
    model: str
    preset: str
    batch: int
    frames: int  # encoder frames each row cross-attends to
    mode: str  # eager or cuda_graph
    ms_per_step: float


@dataclass(frozen=True)
class SkippedCase:
    kind: str  # end_to_end or micro
    model: str
    preset: str
    audio_seconds: float
    reason: str


@dataclass(frozen=True)
class Environment:
    command: str
    date: str  # UTC, ISO 8601
    device: str  # cpu, cuda, cuda:N
    device_name: str
    dtype: str
    torch: str
    transformers: str | None
    python: str
    platform: str
    cpu_count: int  # CPUs this process may run on
    torch_threads: int
    git_commit: str | None


@dataclass(frozen=True)
class TargetCheck:
    target: str
    status: str  # met, not met, not measured, not applicable
    detail: str


@dataclass(frozen=True)
class BenchResults:
    environment: Environment
    options: BenchOptions
    models: tuple[ModelInfo, ...]
    end_to_end: tuple[EndToEndResult, ...]
    encoder: tuple[EncoderResult, ...]
    step: tuple[StepResult, ...]
    skipped: tuple[SkippedCase, ...]
    targets: tuple[TargetCheck, ...]
    total_seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------- audio


@functools.lru_cache(maxsize=2)
def _utterance_bank(seed: int, count: int = 24) -> tuple[np.ndarray, ...]:
    """``count`` voiced utterances of 1.5-8 s: a gliding harmonic source, formant weights, 4 Hz syllables."""
    rng = np.random.default_rng(seed)
    bank = []
    for _ in range(count):
        n = int(rng.uniform(1.5, 8.0) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.uniform(90, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        formants = rng.uniform([400, 1100, 2300], [900, 2000, 3200])
        voice = np.zeros(n)
        for k in range(1, 16):
            weight = sum(np.exp(-(((k * f0.mean() - f) / 300) ** 2)) for f in formants) / k + 0.02 / k
            voice += weight * np.sin(k * phase)
        syllables = (0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi))) ** 1.5
        signal = voice * syllables + 0.02 * rng.standard_normal(n)
        bank.append((0.3 * signal / np.abs(signal).max()).astype(np.float32))
    return tuple(bank)


def synthetic_speech(seconds: float, seed: int = 0, block_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Speech-like 16 kHz audio in (block,) float32 blocks: utterances from a small bank, 0.2-1.5 s pauses.

    Generation is a copy per piece, so it costs little against the models; at most one piece and one block are
    held besides the bank (~2 M samples).
    """
    rng = np.random.default_rng(seed + 1)
    bank = _utterance_bank(seed)
    total, block = round(seconds * SAMPLE_RATE), max(1, round(block_seconds * SAMPLE_RATE))
    buffer = np.zeros(0, dtype=np.float32)
    emitted = 0
    while emitted < total:
        utterance = bank[rng.integers(len(bank))] * np.float32(rng.uniform(0.4, 1.0))
        pause = (1e-3 * rng.standard_normal(int(rng.uniform(0.2, 1.5) * SAMPLE_RATE))).astype(np.float32)
        buffer = np.concatenate([buffer, utterance, pause])
        while buffer.size >= block and emitted < total:
            size = min(block, total - emitted)
            yield buffer[:size]
            buffer, emitted = buffer[size:], emitted + size


# ----------------------------------------------------------------------------------------------- models


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


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


def transformers_version() -> str | None:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return None


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


# ----------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StageClock:
    """Seconds per named stage; the device is synchronised at both ends of a stage."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class DecodeCounts:
    windows: int  # samba windows or whisper chunks
    segments: int  # decoder rows
    tokens: int  # forced tokens (sum of row budgets)


class Runner(Protocol):
    """Forced transcription of a stream of 16 kHz blocks by one model."""

    def run(self, blocks: Iterable[np.ndarray], clock: StageClock) -> DecodeCounts: ...


def _suppress_mask(vocab: int, ids: Iterable[int], device: torch.device) -> torch.Tensor:
    """(vocab,) True at the token ids that forced decoding never picks (eos and the other specials)."""
    mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    mask[list(ids)] = True
    return mask


def _rows_to_host(tokens: torch.Tensor, budgets: list[int]) -> int:
    """Copy forced tokens (B, steps) to the host, as a search returning text would; the tokens counted."""
    tokens.cpu()
    return sum(budgets)


# ----------------------------------------------------------------------------------------------- samba


class SambaRunner:
    """Forced end-to-end transcription with samba: the pipeline's stages, the decoder driven for a fixed budget."""

    def __init__(self, model: SambaASR, options: BenchOptions) -> None:
        self.model = model
        self.options = options
        self.param = next(model.parameters())
        self.segment_options = SegmentOptions()
        transcribe = TranscribeOptions(segments=self.segment_options)
        self.steppers = StepperFactory(model, max_decoder_frames(model, transcribe), options.cuda_graphs)
        cfg = model.config
        self.suppress = _suppress_mask(
            cfg.vocab_size, (cfg.bos_id, cfg.eos_id, cfg.pad_id), self.param.device
        )

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
            tokens = stepper.step(tokens).masked_fill(self.suppress, -math.inf).argmax(-1)
            out[:, i] = tokens
        return out

    def decode_batch(self, batch: list[tuple[torch.Tensor, int]], clock: StageClock) -> int:
        with clock.stage("decode"):
            lengths = torch.tensor([s.shape[0] for s, _ in batch], device=self.param.device)
            padded = torch.nn.utils.rnn.pad_sequence([s for s, _ in batch], batch_first=True)
            budgets = [b for _, b in batch]
            return _rows_to_host(self.forced_decode(padded, lengths, max(budgets)), budgets)

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


# ----------------------------------------------------------------------------------------------- whisper


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
        self.suppress = _suppress_mask(
            c.vocab_size, (c.bos_token_id, c.eos_token_id, c.pad_token_id), self.param.device
        )
        self.prompt = torch.arange(WHISPER_PROMPT, device=self.param.device) + 4  # four ordinary ids
        self.cache_kw = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

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

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(self.suppress, -math.inf).argmax(-1)

    def prefill(self, encoded: torch.Tensor, prefix: int = 0) -> tuple[torch.Tensor, object]:
        """The 4-token prompt (+ ``prefix`` teacher-forced tokens) -> last logits (B, V) and the KV cache."""
        ids = torch.cat([self.prompt, self.prompt.new_full((prefix,), 5)]).expand(encoded.shape[0], -1)
        return self._forward(encoded, ids, None)

    def extend(self, encoded: torch.Tensor, logits: torch.Tensor, cache, steps: int) -> torch.Tensor:
        """``steps`` forced tokens (B, steps) from the prefilled ``logits`` and ``cache``: steps - 1 passes."""
        out = torch.empty(encoded.shape[0], steps, dtype=torch.long, device=encoded.device)
        for i in range(steps):
            out[:, i] = self.pick(logits)
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
            return _rows_to_host(self.forced_decode(encoded, max(budgets)), budgets)

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


# ----------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    kind: str  # end_to_end or micro (encoder and step cases of one model)
    model: str  # samba or whisper
    preset: str
    audio_seconds: float = 0.0  # end_to_end only


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _build(case: Case, options: BenchOptions) -> tuple[torch.nn.Module, ModelInfo, Runner]:
    """The model of ``case``, its description, and its forced-transcription runner."""
    device = _device(options.device)
    dtype = _dtype(options.dtype, device)
    torch.manual_seed(options.seed)
    if case.model == "samba":
        model = build_samba(case.preset, device, dtype, options.backend)
        return model, samba_info(case.preset, model), SambaRunner(model, options)
    model = build_whisper(case.preset, device, dtype)
    return model, whisper_info(case.preset, model), WhisperRunner(model, options)


def warmup_seconds(options: BenchOptions, device: torch.device) -> float:
    """Audio for the warm-up run: on CUDA enough for full decode batches of both models (allocator, kernels)."""
    if options.warmup_seconds is not None:
        return options.warmup_seconds
    return 360.0 if device.type == "cuda" else 20.0


def run_end_to_end(case: Case, options: BenchOptions) -> tuple[ModelInfo, EndToEndResult]:
    """Build, warm up, then time ``case.audio_seconds`` of generated audio."""
    _, info, runner = _build(case, options)
    device = _device(options.device)
    if isinstance(runner, SambaRunner):
        runner.prepare()
    runner.run(synthetic_speech(warmup_seconds(options, device), options.seed + 7), StageClock(device))
    synchronize(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    baseline_rss, baseline_cuda = _peak_rss_bytes(), torch.cuda.memory_allocated(device) if cuda else None
    clock = StageClock(device)
    start = time.perf_counter()
    counts = runner.run(synthetic_speech(case.audio_seconds, options.seed), clock)
    synchronize(device)
    wall = time.perf_counter() - start
    result = EndToEndResult(
        model=case.model,
        preset=case.preset,
        audio_seconds=case.audio_seconds,
        wall_seconds=wall,
        rtfx=case.audio_seconds / wall,
        features_seconds=clock.seconds.get("features", 0.0),
        encoder_seconds=clock.seconds.get("encoder", 0.0),
        decode_seconds=clock.seconds.get("decode", 0.0),
        windows=counts.windows,
        segments=counts.segments,
        tokens=counts.tokens,
        baseline_rss_bytes=baseline_rss,
        peak_rss_bytes=_peak_rss_bytes(),
        baseline_cuda_bytes=baseline_cuda,
        peak_cuda_bytes=torch.cuda.max_memory_allocated(device) if cuda else None,
        cuda_graphs=case.model == "samba" and cuda and options.cuda_graphs,
    )
    return info, result


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def _encoder_call(case: Case, model, seconds: float, batch_size: int) -> tuple[Callable[[], object], int]:
    """A call that encodes random features of ``seconds`` of audio, and its number of windows.

    samba: one window of the whole length (batch 1). whisper: 30 s windows (3000 frames), ``batch_size`` at once.
    """
    param = next(model.parameters())
    if case.model == "samba":
        feats = torch.randn(
            1, model.config.n_mels, round(seconds * 100) + 1, device=param.device, dtype=param.dtype
        )
        return (lambda: model.encode(feats)), 1
    windows = math.ceil(seconds / WHISPER_CHUNK_SECONDS)
    feats = torch.randn(windows, model.config.num_mel_bins, 3000, device=param.device, dtype=param.dtype)
    return (lambda: [model.model.encoder(b) for b in feats.split(batch_size)]), windows


def time_encoder(case: Case, model, options: BenchOptions) -> list[EncoderResult]:
    """Best-of-``repeats`` encoder seconds per audio length."""
    device = next(model.parameters()).device
    results = []
    for k, seconds in enumerate(sorted(options.encoder_seconds)):
        call, windows = _encoder_call(case, model, seconds, options.batch_size)
        if k == 0 or device.type == "cuda":  # warm-up; on CUDA per length, as Triton autotuning may key on it
            call()
        best = _best_seconds(call, device, options.repeats)
        results.append(EncoderResult(case.model, case.preset, seconds, windows, best))
        del call
    return results


def time_samba_steps(case: Case, runner: SambaRunner, options: BenchOptions) -> list[StepResult]:
    """ms per forced step (step, suppress, argmax) at each batch, cross-attending to a full-length segment."""
    model, param = runner.model, runner.param
    frames = runner.steppers.max_frames
    modes = ["eager"] + (["cuda_graph"] if param.device.type == "cuda" and options.cuda_graphs else [])
    results = []
    for batch in options.step_batches:
        states = torch.randn(batch, frames, model.config.d_model, device=param.device, dtype=param.dtype)
        lengths = torch.full((batch,), frames, device=param.device)
        for mode in modes:
            if mode == "eager":
                stepper = EagerStepper(model, states, lengths)
            else:
                stepper = StaticStepper(model, bucket(batch), frames, use_graph=True).load(states, lengths)
            tokens = torch.full((batch,), model.config.bos_id, device=param.device)

            def step(stepper=stepper, tokens=tokens) -> None:
                tokens.copy_(stepper.step(tokens).masked_fill(runner.suppress, -math.inf).argmax(-1))

            for _ in range(3):
                step()
            seconds = _best_seconds(
                lambda step=step: [step() for _ in range(options.step_count)], param.device, 1
            )
            results.append(
                StepResult("samba", case.preset, batch, frames, mode, 1000 * seconds / options.step_count)
            )
    return results


def time_whisper_steps(case: Case, runner: WhisperRunner, options: BenchOptions) -> list[StepResult]:
    """ms per forced step (decoder pass, mask, argmax).

    An untimed prefill first fills the KV cache to about the middle of a 30 s chunk's token budget.
    """
    param = runner.param
    frames = runner.model.config.max_source_positions
    middle = token_budget(WHISPER_CHUNK_SECONDS, options.tokens_per_second) // 2
    prefix = max(0, middle - options.step_count // 2)
    results = []
    for batch in options.step_batches:
        encoded = torch.randn(
            batch, frames, runner.model.config.d_model, device=param.device, dtype=param.dtype
        )
        runner.extend(encoded, *runner.prefill(encoded, prefix), 4)  # warm-up
        logits, cache = runner.prefill(encoded, prefix)
        seconds = _best_seconds(
            lambda e=encoded, lg=logits, c=cache: runner.extend(e, lg, c, options.step_count + 1),
            param.device,
            1,
        )
        results.append(
            StepResult("whisper", case.preset, batch, frames, "eager", 1000 * seconds / options.step_count)
        )
    return results


def run_micro(case: Case, options: BenchOptions) -> tuple[ModelInfo, list[EncoderResult], list[StepResult]]:
    model, info, runner = _build(case, options)
    with torch.inference_mode():
        encoder = time_encoder(case, model, options)
        if case.model == "samba":
            steps = time_samba_steps(case, runner, options)
        else:
            steps = time_whisper_steps(case, runner, options)
    return info, encoder, steps


def run_case(case: Case, options: BenchOptions) -> dict:
    """Run one case in this process -> a JSON-ready dict (``model``, and ``end_to_end`` or ``encoder``/``step``)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    if case.kind == "end_to_end":
        info, result = run_end_to_end(case, options)
        return {"model": dataclasses.asdict(info), "end_to_end": dataclasses.asdict(result)}
    info, encoder, steps = run_micro(case, options)
    return {
        "model": dataclasses.asdict(info),
        "encoder": [dataclasses.asdict(r) for r in encoder],
        "step": [dataclasses.asdict(r) for r in steps],
    }


def run_case_in_child(case: Case, options: BenchOptions, timeout: float | None = None) -> dict:
    """Run one case in a fresh Python process (``python -m samba_cli.bench``), so its peak memory is its own."""
    with tempfile.TemporaryDirectory(prefix="samba-bench-") as tmp:
        spec, result = Path(tmp) / "case.json", Path(tmp) / "result.json"
        spec.write_text(
            json.dumps({"case": dataclasses.asdict(case), "options": dataclasses.asdict(options)})
        )
        proc = subprocess.run(
            [sys.executable, "-m", "samba_cli.bench", str(spec), str(result)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not result.exists():
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise RuntimeError(f"case failed: {tail[0]}")
        return json.loads(result.read_text())


# ----------------------------------------------------------------------------------------------- orchestration


def environment(options: BenchOptions, command: str) -> Environment:
    device = _device(options.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return Environment(
        command=command,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=str(device),
        device_name=name,
        dtype=str(_dtype(options.dtype, device)).removeprefix("torch."),
        torch=torch.__version__,
        transformers=transformers_version(),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0,
        torch_threads=options.threads or torch.get_num_threads(),
        git_commit=_git_commit(),
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def plan(options: BenchOptions) -> list[Case]:
    """Micro cases, then end-to-end cases shortest first, samba before whisper at each length.

    A time budget then cuts the longest whisper cases first.
    """
    micro = [Case("micro", m, p) for p in options.presets for m in options.models]
    e2e = [
        Case("end_to_end", m, p, 60.0 * minutes)
        for minutes in sorted(options.minutes)
        for m in options.models
        for p in options.presets
    ]
    return micro + e2e


@dataclass
class _Budget:
    """Predicts a case's wall time from the same model's last end-to-end case: audio / RTFx + start-up."""

    total: float | None
    start: float = field(default_factory=time.perf_counter)
    last: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (rtfx, overhead s)

    def left(self) -> float | None:
        return None if self.total is None else self.total - (time.perf_counter() - self.start)

    def predict(self, case: Case) -> float | None:
        if case.kind != "end_to_end" or (case.model, case.preset) not in self.last:
            return None
        rtfx, overhead = self.last[(case.model, case.preset)]
        return case.audio_seconds / rtfx + overhead

    def record(self, case: Case, result: EndToEndResult, child_seconds: float) -> None:
        self.last[(case.model, case.preset)] = (result.rtfx, max(0.0, child_seconds - result.wall_seconds))


def _label(case: Case) -> str:
    length = f" {case.audio_seconds / 60:g} min" if case.kind == "end_to_end" else ""
    return f"{case.kind} {case.model} {case.preset}{length}"


def _skip_reason(case: Case, budget: _Budget) -> str | None:
    if case.model == "whisper" and importlib.util.find_spec("transformers") is None:
        return "transformers is not installed (pip install transformers)"
    predicted, left = budget.predict(case), budget.left()
    if left is not None and left <= 0:
        return "the time budget is spent"
    if predicted is not None and left is not None and predicted > left:
        return f"predicted {predicted:.0f} s from the shorter case, but only {left:.0f} s of the budget left"
    return None


def run_bench(
    options: BenchOptions,
    command: str = "",
    isolate: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchResults:
    """Run every case of ``options``. ``isolate``: each case in a fresh child process (needed for peak memory).

    A case that fails or is skipped (budget, transformers missing) is listed in ``skipped`` with the reason.
    """
    say = progress or logger.info
    start = time.perf_counter()
    env = environment(options, command)
    budget = _Budget(options.budget_seconds)
    models: dict[tuple[str, str], ModelInfo] = {}
    e2e, encoder, step, skipped = [], [], [], []
    for case in plan(options):
        reason = _skip_reason(case, budget)
        if reason is None:
            say(f"run  {_label(case)}")
            case_start = time.perf_counter()
            left = budget.left()
            try:
                timeout = None if left is None else max(60.0, left)
                data = run_case_in_child(case, options, timeout) if isolate else run_case(case, options)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                reason = f"failed: {exc}"
        if reason is not None:
            say(f"skip {_label(case)}: {reason}")
            skipped.append(SkippedCase(case.kind, case.model, case.preset, case.audio_seconds, reason))
            continue
        models[(case.model, case.preset)] = ModelInfo(**data["model"])
        if case.kind == "end_to_end":
            e2e.append(EndToEndResult(**data["end_to_end"]))
            budget.record(case, e2e[-1], time.perf_counter() - case_start)
            say(f"     {e2e[-1].rtfx:.1f}x real time, {e2e[-1].wall_seconds:.1f} s")
        else:
            encoder.extend(EncoderResult(**r) for r in data["encoder"])
            step.extend(StepResult(**r) for r in data["step"])
    return BenchResults(
        environment=env,
        options=options,
        models=tuple(models.values()),
        end_to_end=tuple(e2e),
        encoder=tuple(encoder),
        step=tuple(step),
        skipped=tuple(skipped),
        targets=tuple(check_targets(env, e2e)),
        total_seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------------------------- targets


def _at(results: Iterable[EndToEndResult], model: str, preset: str, minutes: float) -> EndToEndResult | None:
    return next(
        (
            r
            for r in results
            if (r.model, r.preset) == (model, preset) and abs(r.audio_seconds - 60 * minutes) < 1
        ),
        None,
    )


def _peak(result: EndToEndResult) -> int | None:
    return result.peak_cuda_bytes if result.peak_cuda_bytes is not None else result.peak_rss_bytes


def check_targets(env: Environment, results: list[EndToEndResult]) -> list[TargetCheck]:
    """The issue's targets, reported and never enforced."""
    checks = []
    presets = sorted({r.preset for r in results})
    for preset in presets:
        samba, whisper = _at(results, "samba", preset, 60), _at(results, "whisper", preset, 60)
        name = f"GPU: samba {preset} >= 2x Whisper RTFx at 60 min"
        if not env.device.startswith("cuda"):
            checks.append(TargetCheck(name, "not applicable", "CPU run"))
        elif samba is None or whisper is None:
            checks.append(TargetCheck(name, "not measured", "needs both 60 min cases"))
        else:
            ratio = samba.rtfx / whisper.rtfx
            detail = f"{samba.rtfx:.1f}x vs {whisper.rtfx:.1f}x: ratio {ratio:.2f}"
            checks.append(TargetCheck(name, "met" if ratio >= 2 else "not met", detail))
    for model, preset in sorted({(r.model, r.preset) for r in results}):
        name = f"{model} {preset}: peak memory flat from 10 to 60 min (growth < 10%)"
        ten, sixty = _at(results, model, preset, 10), _at(results, model, preset, 60)
        if ten is None or sixty is None or _peak(ten) is None or _peak(sixty) is None:
            checks.append(TargetCheck(name, "not measured", "needs both the 10 and 60 min cases"))
            continue
        growth = (_peak(sixty) - _peak(ten)) / _peak(ten)
        detail = f"{_mib(_peak(ten))} -> {_mib(_peak(sixty))} MiB ({100 * growth:+.1f}%)"
        checks.append(TargetCheck(name, "met" if growth < 0.10 else "not met", detail))
    tiny = [r for r in results if (r.model, r.preset) == ("samba", "tiny")]
    name = "CPU: samba tiny >= 20x real time on 2 cores"
    if env.device != "cpu":
        checks.append(TargetCheck(name, "not applicable", f"run on {env.device}"))
    elif not tiny:
        checks.append(TargetCheck(name, "not measured", "no samba tiny case"))
    else:
        longest = max(tiny, key=lambda r: r.audio_seconds)
        detail = (
            f"{longest.rtfx:.1f}x at {longest.audio_seconds / 60:g} min with {env.torch_threads} torch threads "
            f"on {env.cpu_count} CPUs"
        )
        checks.append(TargetCheck(name, "met" if longest.rtfx >= 20 else "not met", detail))
    return checks


# ----------------------------------------------------------------------------------------------- output


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _provenance(env: Environment) -> str:
    return (
        f"`{env.command}` on {env.device} ({env.device_name}, {env.cpu_count} CPUs, {env.torch_threads} threads), "
        f"{env.dtype}, torch {env.torch}, transformers {env.transformers or 'not installed'}, "
        f"commit {env.git_commit or 'unknown'}, {env.date}"
    )


E2E_HEADER = "model|preset|audio (min)|wall (s)|RTFx|features / encoder / decode (s)|windows|rows|tokens|"
E2E_HEADER += "peak RSS (MiB)|peak CUDA (MiB)|CUDA graphs"


def _e2e_row(r: EndToEndResult) -> list[str]:
    stages = f"{r.features_seconds:.1f} / {r.encoder_seconds:.1f} / {r.decode_seconds:.1f}"
    return [r.model, r.preset, f"{r.audio_seconds / 60:.3g}", f"{r.wall_seconds:.1f}", f"{r.rtfx:.1f}", stages,
            str(r.windows), str(r.segments), str(r.tokens), _mib(r.peak_rss_bytes), _mib(r.peak_cuda_bytes),
            "yes" if r.cuda_graphs else "no"]  # fmt: skip


def _encoder_row(r: EncoderResult) -> list[str]:
    speed = f"{r.audio_seconds / r.seconds:.1f}"
    return [r.model, r.preset, f"{r.audio_seconds:g}", str(r.windows), f"{r.seconds:.3f}", speed]


def _step_row(r: StepResult) -> list[str]:
    return [r.model, r.preset, str(r.batch), str(r.frames), r.mode, f"{r.ms_per_step:.2f}"]


def _skipped_row(s: SkippedCase) -> list[str]:
    return [s.kind, s.model, s.preset, f"{s.audio_seconds / 60:.3g}", s.reason]


def to_markdown(results: BenchResults) -> str:
    env, opt = results.environment, results.options
    lines = [
        "# samba bench",
        "",
        f"Run: {_provenance(env)}. Total {results.total_seconds:.0f} s.",
        "",
        f"Random weights, forced decoding of {opt.tokens_per_second:g} tokens per second of audio with end-of-text "
        f"suppressed; decode batch {opt.batch_size}; samba windows {opt.window_seconds:g} s, VAD "
        f"{'on' if opt.vad else 'off'}; whisper 30 s chunks with {opt.whisper_stride_seconds:g} s stride per side.",
        "",
        "## Models",
        "",
        *_table(
            ["model", "sized for", "parameters", "shape"],
            [[m.model, m.preset, f"{m.parameters / 1e6:.2f} M", m.shape] for m in results.models],
        ),
        "",
        "## End to end",
        "",
        "RTFx = audio seconds / wall seconds (higher is faster). Peak memory is the case's own child process.",
        "",
        *_table(E2E_HEADER.split("|"), [_e2e_row(r) for r in results.end_to_end]),
        "",
        "![RTFx and peak memory against audio length](rtfx.png)",
        "",
        "## Encoder only",
        "",
        "samba: one window of the whole length (batch 1); whisper: 30 s windows, batched.",
        "",
        *_table(
            ["model", "preset", "audio (s)", "windows", "seconds", "x real time"],
            [_encoder_row(r) for r in results.encoder],
        ),
        "",
        "![Encoder time against audio length](encoder.png)",
        "",
        "## Decoder step",
        "",
        "One forced step (decoder step, special tokens suppressed, argmax); whisper's KV cache is filled to the "
        "middle of a 30 s chunk's budget.",
        "",
        *_table(
            ["model", "preset", "batch", "encoder frames", "mode", "ms / step"],
            [_step_row(r) for r in results.step],
        ),
        "",
        "## Targets (reported, not enforced)",
        "",
        *_table(["target", "status", "detail"], [[t.target, t.status, t.detail] for t in results.targets]),
    ]
    if results.skipped:
        header = ["kind", "model", "preset", "audio (min)", "reason"]
        lines += ["", "## Not run", "", *_table(header, [_skipped_row(s) for s in results.skipped])]
    return "\n".join(lines) + "\n"


def _series(rows: Iterable, x: Callable, y: Callable) -> Iterator[tuple[str, str, list, list]]:
    """(label, line style, xs, ys) per model and preset, sorted by audio length."""
    for model, preset in sorted({(r.model, r.preset) for r in rows}):
        own = sorted(
            (r for r in rows if (r.model, r.preset) == (model, preset)), key=lambda r: r.audio_seconds
        )
        yield (
            f"{model} ({preset})",
            "o-" if model == "samba" else "s--",
            [x(r) for r in own],
            [y(r) for r in own],
        )


def _minutes(result: EndToEndResult) -> float:
    return result.audio_seconds / 60


def _save(fig, env: Environment, path: Path) -> Path:
    """Footer with the provenance (command, device, versions, date), then save."""
    import textwrap

    fig.text(0.01, 0.01, "\n".join(textwrap.wrap(_provenance(env), 150)), fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)
    return path


def plot(results: BenchResults, directory: Path) -> list[Path]:
    """rtfx.png (RTFx and peak memory against audio length, log x) and encoder.png; [] without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results.end_to_end:
        fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.8))
        for label, style, xs, ys in _series(results.end_to_end, _minutes, lambda r: r.rtfx):
            speed.plot(xs, ys, style, label=label)
        for label, style, xs, ys in _series(results.end_to_end, _minutes, lambda r: (_peak(r) or 0) / 2**20):
            memory.plot(xs, ys, style, label=label)
        speed.set(xscale="log", xlabel="audio (minutes)", ylabel="RTFx (audio s / wall s)", title="Speed")
        memory.set(xscale="log", xlabel="audio (minutes)", ylabel="peak memory (MiB)", title="Peak memory")
        for ax in (speed, memory):
            ax.set_ylim(bottom=0)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        written.append(_save(fig, results.environment, directory / "rtfx.png"))
        plt.close(fig)
    if results.encoder:
        fig, ax = plt.subplots(figsize=(6.5, 4.8))
        for label, style, xs, ys in _series(results.encoder, lambda r: r.audio_seconds, lambda r: r.seconds):
            ax.plot(xs, ys, style, label=label)
        ax.set(xscale="log", yscale="log", xlabel="audio (s)", ylabel="encoder (s)", title="Encoder time")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, results.environment, directory / "encoder.png"))
        plt.close(fig)
    return written


def write_results(results: BenchResults, directory: Path) -> list[Path]:
    """results.json, results.md and the plots in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "results.json", directory / "results.md"
    json_path.write_text(json.dumps(results.to_dict(), indent=2) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(results), encoding="utf-8")
    return [json_path, md_path, *plot(results, directory)]


def _child_main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    data = run_case(Case(**spec["case"]), BenchOptions.from_dict(spec["options"]))
    Path(result_path).write_text(json.dumps(data))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    _child_main(*sys.argv[1:3])
