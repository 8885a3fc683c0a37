"""The student of a distillation run: the model plus a training-only linear head on one encoder block's output.

The head is not part of the model: checkpoints (``checkpoint/``, ``best/``, snapshots) hold the model's weights
only; the training state (state.pt) holds the head's weights and, through the optimizer, its moments.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from samba_cli.model import ModelOutput, SambaASR
from samba_cli.train.data import Batch, Utterance
from samba_cli.train.teacher import (
    STUDENT_SUBSAMPLING,
    TeacherLookup,
    TeacherTargets,
    distill_loss,
    utterance_key,
)


def resolve_layer(layer: int, encoder_layers: int) -> int:
    """``layer`` 1..encoder_layers, or 0 for the last block: the 1-based block whose output is distilled."""
    if not 0 <= layer <= encoder_layers:
        raise ValueError(f"distill_layer must be 0 (the last) or 1..{encoder_layers}, got {layer}")
    return layer or encoder_layers


class Student(nn.Module):
    """``model`` and ``head``: RMSNorm, then Linear(d_model, teacher dimension), on the output of encoder block
    ``layer`` (1-based), captured by a forward hook, so the model's own forward pass is unchanged. The norm is
    there because a block's output is the residual stream before the encoder's final norm: in a trained model
    its scale is far from one.

    Parameters are registered model first, then head: an optimizer over them lists the model's in the order an
    optimizer over the model alone would, then the head's.
    """

    def __init__(self, model: SambaASR, teacher_dim: int, layer: int) -> None:
        super().__init__()
        self.model = model
        self.layer = resolve_layer(layer, model.config.encoder_layers)
        self.head = nn.Sequential(
            nn.RMSNorm(model.config.d_model, eps=1e-5), nn.Linear(model.config.d_model, teacher_dim)
        )
        self._captured: torch.Tensor | None = None
        model.encoder.blocks[self.layer - 1].register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._captured = output

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[ModelOutput, torch.Tensor]:
        """The model's output and the head's prediction (B, S, teacher dimension) of the teacher's frames."""
        self._captured = None
        out = self.model(features, lengths, tokens)
        captured, self._captured = self._captured, None
        return out, self.head(captured)


def batch_distill_loss(predicted: torch.Tensor, batch: Batch, encoder_lengths: torch.Tensor) -> torch.Tensor:
    """The distillation loss of a batch: the head's prediction (B, S, D) against the batch's teacher targets,
    over the frames that both the encoder output and the targets cover."""
    if batch.teacher is None or batch.teacher_frames is None:
        raise ValueError("a distillation batch needs teacher targets")
    if not bool(batch.teacher_frames.any()):  # no utterance of the batch has targets
        return (predicted * 0.0).sum()
    if batch.teacher.shape != predicted.shape:
        raise ValueError(
            f"teacher targets {tuple(batch.teacher.shape)} do not match the prediction {tuple(predicted.shape)}"
        )
    frames = torch.arange(predicted.shape[1], device=predicted.device)[None, :]
    mask = (frames < batch.teacher_frames[:, None]) & (frames < encoder_lengths[:, None])
    return distill_loss(predicted, batch.teacher, mask)


def teacher_lookup(
    utterances: list[Utterance], manifest: str, targets: TeacherTargets, subsampling: int
) -> tuple[TeacherLookup, str]:
    """The lookup of ``utterances`` (read from ``manifest``) in ``targets``, and a line saying how many have
    targets. An unlabelled utterance without targets, or no utterance with any, is an error."""
    if subsampling != STUDENT_SUBSAMPLING:
        raise ValueError(
            f"{targets.folder}: teacher targets are at {STUDENT_SUBSAMPLING}x the feature hop; "
            f"this model subsamples by {subsampling}"
        )
    folder = Path(manifest).parent
    keys = [utterance_key(u.audio, folder) for u in utterances]
    found = [key in targets for key in keys]
    missing_unlabelled = [
        key for key, u, ok in zip(keys, utterances, found, strict=True) if u.text is None and not ok
    ]
    if missing_unlabelled:
        raise ValueError(
            f"{manifest}: {len(missing_unlabelled)} unlabelled utterances have no teacher targets in "
            f"{targets.folder} (e.g. {missing_unlabelled[0]}); build them with recipes/teacher/targets.py"
        )
    if not any(found):
        raise ValueError(
            f"{targets.folder}: no targets for any utterance of {manifest}; build them from this manifest"
        )
    line = f"teacher targets for {sum(found)} of {len(keys)} training utterances (dimension {targets.dim})"
    return TeacherLookup(targets, keys, subsampling), line


def check_labels(utterances: list[Utterance], manifest: str, distill: bool) -> None:
    """Unlabelled utterances ("text": null) need --distill-targets."""
    unlabelled = sum(u.text is None for u in utterances)
    if unlabelled and not distill:
        raise ValueError(
            f'{manifest}: {unlabelled} utterances have "text": null (unlabelled); they train only with '
            "--distill-targets (teacher targets), give it or leave them out"
        )
