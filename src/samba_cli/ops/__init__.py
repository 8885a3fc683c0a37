"""SSD operator backends: ``torch`` (pure PyTorch, any device) and ``fused`` (mamba-ssm Triton kernels, CUDA).

The backend is resolved once, at model load time, by :func:`resolve_backend`; mamba-ssm is imported only when the
fused backend is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from samba_cli.errors import BackendError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "fused")


@dataclass(frozen=True)
class SSDOps:
    name: str  # "torch" or "fused"
    chunked: (
        Callable  # ssd_chunked(x, dt, A, B, C, chunk_size, D, dt_bias, initial_state) -> (y, final_state)
    )
    step: Callable  # ssd_step(state, x, dt, A, B, C, D, dt_bias) -> y, updates state in place


def fused_available() -> bool:
    """True when CUDA is usable and mamba-ssm is installed (without importing it)."""
    return torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None


def fused_runs_on(device: torch.device) -> bool:
    """True where the Triton kernels can run: a usable CUDA device. (The fused test tier adds the CPU, under
    Triton's interpreter, in tests/fused_shims.py.)"""
    return device.type == "cuda" and torch.cuda.is_available()


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """Turn ``auto`` into a concrete backend for ``device``; reject ``fused`` where it cannot run."""
    device = torch.device(device)
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if requested == "auto":
        return "fused" if device.type == "cuda" and fused_available() else "torch"
    if requested == "fused":
        if not fused_runs_on(device):
            raise BackendError(
                "the fused backend needs a CUDA device; use --device cuda or the torch backend"
            )
        if importlib.util.find_spec("mamba_ssm") is None:
            raise BackendError(
                "the fused backend needs mamba-ssm: `pip install 'samba-asr[cuda]'`, or use the torch backend"
            )
    return requested


def get_ops(backend: str) -> SSDOps:
    """The operator set of a concrete backend (``torch`` or ``fused``)."""
    if backend == "torch":
        from samba_cli.ops import ssd

        return SSDOps("torch", ssd.ssd_chunked, ssd.ssd_step)
    if backend == "fused":
        fused = importlib.import_module("samba_cli.ops.fused")
        return SSDOps("fused", fused.ssd_chunked, fused.ssd_step)
    raise BackendError(f"unknown backend {backend!r}")
