"""Checkpoint averaging: the element-wise mean of the weights of several model folders of one run.

Averaging the last few checkpoints of a run (e.g. the snapshots that ``keep_every`` leaves) smooths the noise of
the final optimizer steps; it is the usual last step of ASR recipes. The folders must share the model config and
the tokenizer; the result is an ordinary model folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from samba_cli.errors import CheckpointError
from samba_cli.model.checkpoint import (
    TOKENIZER_FILE,
    load_checkpoint,
    read_config_file,
    save_checkpoint,
)


def average_checkpoints(
    folders: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the mean of the weights of ``folders`` as a model folder ``out``; returns ``out``.

    Floating-point tensors are averaged in float64; any other tensor must be equal in every folder. The config
    (model section) and the tokenizer file must match too. ``out``'s metadata is that of the last folder, plus
    ``averaged_from`` (the folders, as given) and the ``step`` of each folder under ``averaged_steps`` when known.
    ``dtype`` stores floating-point tensors in another precision.
    """
    folders = [Path(folder) for folder in folders]
    if not folders:
        raise CheckpointError("nothing to average: give at least one model folder")
    configs = [read_config_file(folder) for folder in folders]
    tokenizers = [_tokenizer_bytes(folder) for folder in folders]
    for folder, config, tokenizer in zip(folders[1:], configs[1:], tokenizers[1:], strict=True):
        if config["model"] != configs[0]["model"]:
            raise CheckpointError(f"{folder}: its model config differs from {folders[0]}'s; cannot average")
        if tokenizer != tokenizers[0]:
            raise CheckpointError(
                f"{folder}: its {TOKENIZER_FILE} differs from {folders[0]}'s; cannot average"
            )

    model = load_checkpoint(folders[0])
    first = model.state_dict()
    sums = {name: _start(tensor) for name, tensor in first.items()}
    for folder in folders[1:]:
        for name, tensor in load_checkpoint(folder).state_dict().items():
            if tensor.is_floating_point():
                sums[name] += tensor.double()
            elif not torch.equal(tensor, sums[name]):
                raise CheckpointError(f"{folder}: {name} differs from {folders[0]}'s and cannot be averaged")
    averaged = {
        name: (total / len(folders)).to(first[name].dtype) if total.is_floating_point() else total
        for name, total in sums.items()
    }
    model.load_state_dict(averaged, strict=True)

    metadata = dict(configs[-1].get("metadata") or {})
    metadata["averaged_from"] = [str(folder) for folder in folders]
    steps = [(config.get("metadata") or {}).get("step") for config in configs]
    if all(isinstance(step, int) for step in steps):
        metadata["averaged_steps"] = steps
    tokenizer_file = folders[-1] / TOKENIZER_FILE
    return save_checkpoint(
        model,
        out,
        tokenizer_file=tokenizer_file if tokenizer_file.is_file() else None,
        dtype=dtype,
        metadata=metadata,
    )


def _start(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.double() if tensor.is_floating_point() else tensor.clone()


def _tokenizer_bytes(folder: Path) -> bytes | None:
    path = folder / TOKENIZER_FILE
    return path.read_bytes() if path.is_file() else None
