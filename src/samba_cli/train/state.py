"""The training state file: model, optimizer, RNG states and data position, written atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from samba_cli.atomic import write_atomically

STATE_FILE = "state.pt"
LOCK_FILE = "LOCK"  # holds the process id of the trainer using the run folder


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches of this rank's share of the epoch already trained on
    world_size: int = 1  # processes that trained the epoch so far (their shares depend on it)
    best_wer: float = math.inf  # best validation WER so far (selects the best/ checkpoint)
    default_decoder: str = "attention"  # the decoder with the lower WER at the last validation


def save_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    position: Position,
    head: nn.Module | None = None,
) -> None:
    """Write the state to ``path`` through a temporary file and a rename: a crash leaves the old file whole.
    ``head``: the training-only distillation head, kept beside the model (never in its checkpoints)."""
    state = {
        "model": model.state_dict(),
        **({} if head is None else {"distill_head": head.state_dict()}),
        "optimizer": optimizer.state_dict(),
        "position": dataclasses.asdict(position),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
    }
    write_atomically(path, lambda stream: torch.save(state, stream), binary=True)


def load_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    head: nn.Module | None = None,
) -> Position:
    """Restore model, optimizer and RNG states (and the distillation ``head``'s) from ``path``; returns the data
    position to continue from."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    if head is not None:
        if "distill_head" not in state:
            raise ValueError(f"{path}: the training state has no distillation head; use another --out folder")
        head.load_state_dict(state["distill_head"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
    return Position(**state["position"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory/LOCK`` while training, so a second trainer cannot write into the same run folder; a lock
    left by a process that no longer runs is taken over."""
    path = directory / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            text = path.read_text(encoding="utf-8").strip()
            holder = int(text) if text.isdigit() else None
            if holder is not None and _alive(holder):
                raise ValueError(
                    f"{directory} is in use by training process {holder}; stop it (kill -TERM {holder}) first"
                ) from None
            path.unlink(missing_ok=True)
    else:
        raise ValueError(f"{directory}: could not take {LOCK_FILE}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)
