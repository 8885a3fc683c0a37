"""Result dataclasses of a run, and the environment it ran in."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from samba_cli.device import resolve_device, resolve_dtype

from .options import BenchOptions


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

    @property
    def peak_bytes(self) -> int | None:
        """Peak CUDA memory on CUDA, else peak RSS."""
        return self.peak_cuda_bytes if self.peak_cuda_bytes is not None else self.peak_rss_bytes


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


def environment(options: BenchOptions, command: str) -> Environment:
    device = resolve_device(options.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return Environment(
        command=command,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=str(device),
        device_name=name,
        dtype=str(resolve_dtype(options.dtype, device)).removeprefix("torch."),
        torch=torch.__version__,
        transformers=transformers_version(),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0,
        torch_threads=options.threads or torch.get_num_threads(),
        git_commit=_git_commit(),
    )


def transformers_version() -> str | None:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return None


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
