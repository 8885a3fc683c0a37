"""Device and dtype names (auto|cpu|cuda|cuda:N, auto|float32|bfloat16|float16|int8) -> torch objects. Imports
only torch. The one device resolver of transcription, evaluation, benchmarks and training."""

from __future__ import annotations

import re

import torch

from samba_cli.errors import BackendError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# float32 with the linear layers' weights in int8 and their inputs quantized per call (dynamic quantization), CPU only
INT8 = "int8"
DEVICE_NAME = r"auto|cpu|cuda(?::(\d+))?"  # the device names accepted (the command line reads it from here)


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; ``cuda`` the current GPU, or under torchrun (``local_rank``
    given) this process's GPU; ``cuda:N`` GPU N. A BackendError for another name, or a GPU that is not there."""
    match = re.fullmatch(DEVICE_NAME, name)
    if match is None:
        raise BackendError(f"unknown device {name!r}: choose auto, cpu, cuda or cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BackendError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if match.group(1) is None:
        return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)
    index, count = int(match.group(1)), torch.cuda.device_count()
    if index >= count:
        raise BackendError(
            f"device {name!r} requested but there are {count} CUDA devices (cuda:0 to cuda:{count - 1})"
        )
    return torch.device("cuda", index)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA and float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: choose auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def resolve_precision(name: str, device: torch.device) -> tuple[torch.dtype, bool]:
    """The weights' dtype and whether the linear layers run in int8, for a dtype name of ``load_model`` (the
    float dtypes, or ``int8``: float32 with int8 linear layers, CPU only). ``auto``: bfloat16 on CUDA, float32 on
    the CPU. A BackendError for int8 on a GPU."""
    if name != INT8:
        return resolve_dtype(name, device), False
    if device.type != "cpu":
        raise BackendError(f"dtype {INT8} runs on the CPU only; on {device} use float32, bfloat16 or float16")
    return torch.float32, True
