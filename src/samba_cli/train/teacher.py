"""Teacher targets for distillation: the on-disk format, the time-alignment rules and the reader.

A targets folder holds, for each manifest it was built from (``recipes/teacher/targets.py``)::

    NAME.json                   what was built: teacher, dimension, frame shift, manifest checksum, shard size
    NAME-00000.safetensors      one float16 tensor (S, D) per utterance, keyed by utterance_key
    NAME-00000.done             marker: the shard is complete (JSON: utterances, audio seconds, teacher seconds)

Alignment: the stored frames are at the student's frame rate (40 ms for a model with 10 ms features and
subsampling 4), and there are exactly as many as the student's encoder gives for the clean clip:
``student_frames(N)`` for N samples. Frame s is centred on time s x 40 ms of the clip, as the student's frame s
is (the centred STFT puts feature frame t at t x 10 ms; each stride-2 convolution with kernel 3 and padding 1 puts
output j on input 2j). Whisper's encoder frame k is centred on k x 20 ms for the same reason, so student frame s
gets the teacher frames 2s - 1, 2s, 2s + 1 weighted 1/4, 1/2, 1/4 (clamped at the clip's ends).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import save

from samba_cli.atomic import write_atomically
from samba_cli.features import HOP_LENGTH, SAMPLE_RATE, num_frames

STUDENT_SUBSAMPLING = 4  # the targets' frame shift is HOP_LENGTH x this: 40 ms
FRAME_SECONDS = HOP_LENGTH * STUDENT_SUBSAMPLING / SAMPLE_RATE
SHARD_SUFFIX = ".safetensors"
DONE_SUFFIX = ".done"


def utterance_key(audio: Path, manifest_dir: Path) -> str:
    """The key of an utterance's targets: its audio path relative to its manifest's folder, with '/'."""
    return Path(os.path.relpath(audio, manifest_dir)).as_posix()


def student_frames(num_samples: int, subsampling: int = STUDENT_SUBSAMPLING) -> int:
    """Encoder frames of the student for ``num_samples`` samples: as Subsampling.output_lengths of the feature
    frames (each stride-2 convolution gives (n - 1) // 2 + 1)."""
    frames = num_frames(num_samples)
    while subsampling > 1:
        frames = (frames - 1) // 2 + 1
        subsampling //= 2
    return frames


def pool_teacher_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """Teacher frames (K, D) at 20 ms, frame k centred on k x 20 ms -> (count, D) at 40 ms, frame s centred on
    s x 40 ms: 1/4, 1/2, 1/4 of frames 2s - 1, 2s, 2s + 1, indices clamped to [0, K - 1]."""
    if len(frames) == 0:
        raise ValueError("no teacher frames to pool")
    centre = 2 * np.arange(count)
    last = len(frames) - 1
    f = frames.astype(np.float32)
    pooled = (
        0.25 * f[np.clip(centre - 1, 0, last)]
        + 0.5 * f[np.clip(centre, 0, last)]
        + 0.25 * f[np.clip(centre + 1, 0, last)]
    )
    return pooled


def resample_targets(targets: torch.Tensor, count: int, factor: float) -> torch.Tensor:
    """Targets (S, D) of the clean clip -> (count, D) for the clip played ``factor`` times faster: frame s of the
    perturbed clip is at time s x 40 ms there, s x factor x 40 ms in the clean clip; linear interpolation between
    the clean frames, clamped at the ends. With factor 1 and count == S the targets are returned as they are."""
    if factor == 1.0 and count == len(targets):
        return targets
    position = (torch.arange(count, dtype=torch.float64) * factor).clamp(max=len(targets) - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=len(targets) - 1)
    weight = (position - low).to(torch.float32)[:, None]
    t = targets.float()
    return t[low] * (1 - weight) + t[high] * weight


def frame_statistics(arrays: list[np.ndarray]) -> dict:
    """Frames, and the sum and sum of squares per dimension, of targets (S, D), for the folder's standardisation."""
    stacked = np.concatenate([a.astype(np.float64) for a in arrays]) if arrays else np.zeros((0, 1))
    return {
        "frames": len(stacked),
        "sum": stacked.sum(0).tolist(),
        "sum_squares": np.square(stacked).sum(0).tolist(),
    }


def write_shard(path: Path, arrays: dict[str, np.ndarray], done: dict) -> None:
    """The shard (float16 tensors by key) and then its marker (``done`` plus the shard's frame statistics), each
    written atomically."""
    half = {key: np.ascontiguousarray(value, dtype=np.float16) for key, value in arrays.items()}
    data = save(half)
    record = {**done, "statistics": frame_statistics(list(half.values()))}
    write_atomically(path, lambda stream: stream.write(data), binary=True)
    write_atomically(path.with_suffix(DONE_SUFFIX), lambda stream: stream.write(json.dumps(record) + "\n"))


class TeacherTargets:
    """The complete shards of a targets folder (those with a .done marker), read one utterance at a time and
    standardised per dimension with the mean and standard deviation of all their frames (Whisper's encoder has a
    few dimensions of large magnitude that would otherwise dominate an L1 loss).

    Picklable (a folder, an index and the statistics), so DataLoader workers can read targets themselves.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: teacher targets folder not found")
        self.index: dict[str, str] = {}  # key -> shard file name
        frames, sums, squares = 0, 0.0, 0.0
        for marker in sorted(self.folder.glob(f"*{DONE_SUFFIX}")):
            shard = marker.with_suffix(SHARD_SUFFIX)
            with safe_open(shard, framework="numpy") as tensors:
                names = tensors.keys()  # safe_open is not iterable
                self.index.update((key, shard.name) for key in names)
                statistics = json.loads(marker.read_text(encoding="utf-8")).get("statistics")
                if statistics is None:  # a marker of an earlier version: count the frames here
                    statistics = frame_statistics([tensors.get_tensor(key) for key in names])
            frames += statistics["frames"]
            sums = sums + np.asarray(statistics["sum"])
            squares = squares + np.asarray(statistics["sum_squares"])
        if not self.index or frames == 0:
            raise ValueError(
                f"{self.folder}: no finished shards of teacher targets; build them with recipes/teacher/targets.py"
            )
        mean = sums / frames
        self.mean = torch.tensor(mean, dtype=torch.float32)  # (D,)
        self.std = torch.tensor(np.sqrt(np.maximum(squares / frames - mean**2, 1e-10)), dtype=torch.float32)
        self.std = self.std.clamp(min=1e-3)  # (D,)
        self.dim = len(self.mean)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def get(self, key: str) -> torch.Tensor | None:
        """The standardised targets (S, D) float32 of ``key``, or None when the folder has none."""
        shard = self.index.get(key)
        if shard is None:
            return None
        with safe_open(self.folder / shard, framework="numpy") as tensors:
            return (torch.from_numpy(tensors.get_tensor(key)).float() - self.mean) / self.std


def distill_loss(predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilHuBERT's loss per frame, L1 (mean over dimensions) - log sigmoid(cosine similarity), averaged over
    the frames where ``mask`` is true. predicted, targets: (B, S, D); mask: (B, S). Zero (still connected to
    ``predicted``) when no frame counts."""
    predicted = predicted.float()
    targets = targets.float()
    l1 = (predicted - targets).abs().mean(-1)
    cosine = F.cosine_similarity(predicted, targets, dim=-1, eps=1e-6)
    per_frame = l1 - F.logsigmoid(cosine)
    weights = mask.to(per_frame.dtype)
    return (per_frame * weights).sum() / weights.sum().clamp(min=1.0)


@dataclass(frozen=True)
class TeacherLookup:
    """The targets of a list of utterances, by their index in it (what a BatchDataset asks for)."""

    targets: TeacherTargets  # the targets folder
    keys: list[str]  # each utterance's key (utterance_key)
    subsampling: int  # the student's subsampling factor (the targets' frames are its encoder frames)

    def get(self, index: int) -> torch.Tensor | None:
        """Standardised targets (S, D) float32 of utterance ``index``, or None."""
        return self.targets.get(self.keys[index])
