"""Benchmark options, presets and constants, and the device and dtype they resolve to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from samba_cli.device import DTYPES
from samba_cli.model import PRESETS, ModelConfig

MODELS = ("samba", "whisper")
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
