"""CPU shims that let mamba-ssm's Triton kernels run under Triton's interpreter, for the ``fused`` test tier.

The tier runs with ``TRITON_INTERPRET=1`` in the environment, set before triton is imported (docs/architecture.md,
"Testing the fused backend without a GPU"). mamba-ssm assumes CUDA tensors in a few places around its kernels;
:func:`install` answers those assumptions for CPU tensors. None of it is in the library, none of it edits
mamba-ssm, and none of it is needed on a GPU:

- an empty ``selective_scan_cuda`` module (mamba-ssm imports its Mamba-1 extension unconditionally);
- ``torch.cuda.device(None)`` (the index of a CPU tensor) is a null context;
- ``torch.cuda.get_device_properties`` of a CPU device reports a small ``multi_processor_count`` (backward reads it);
- the autotuner does not time its configs (there is no driver to time with): each scores its block volume, so the
  smallest is used, the quickest to interpret (the configs compute the same result);
- ``samba_cli.ops`` lets the fused backend run on CPU devices.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import types

import pytest
import torch

INTERPRETER_ON = os.environ.get("TRITON_INTERPRET") == "1"
CPU_SM_COUNT = 4  # what backward kernels size their grids by


def _block_volume(self, *args, config, **meta) -> list[float]:
    """Stands in for ``Autotuner._bench``: a config's score is the product of its block sizes."""
    volume = math.prod(v for k, v in config.kwargs.items() if k.startswith("BLOCK_SIZE"))
    return [float(volume)] * 3


def install(patch: pytest.MonkeyPatch) -> None:
    """Apply the shims for the life of ``patch`` (a session-wide MonkeyPatch in tests/test_fused.py)."""
    if not INTERPRETER_ON:
        raise RuntimeError(
            "the fused tier needs TRITON_INTERPRET=1 in the environment before triton is imported"
        )
    if "selective_scan_cuda" not in sys.modules:
        patch.setitem(sys.modules, "selective_scan_cuda", types.ModuleType("selective_scan_cuda"))

    cuda_device = torch.cuda.device

    def device(index):
        if index is None or (isinstance(index, torch.device) and index.type == "cpu"):
            return contextlib.nullcontext()
        return cuda_device(index)

    properties = torch.cuda.get_device_properties

    def get_device_properties(dev=None):
        if dev is not None and torch.device(dev).type == "cpu":
            return types.SimpleNamespace(multi_processor_count=CPU_SM_COUNT)
        return properties(dev)

    from triton.runtime.autotuner import Autotuner

    import samba_cli.ops

    patch.setattr(torch.cuda, "device", device)
    patch.setattr(torch.cuda, "get_device_properties", get_device_properties)
    patch.setattr(Autotuner, "_bench", _block_volume)
    patch.setattr(samba_cli.ops, "fused_runs_on", lambda device: device.type in ("cpu", "cuda"))
