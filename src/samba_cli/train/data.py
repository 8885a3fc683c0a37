"""Manifests, duration-bucketed batches and the dataset that turns a batch plan into padded feature tensors."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from samba_cli.audio import load_audio
from samba_cli.errors import SambaError
from samba_cli.features import SAMPLE_RATE, log_mel
from samba_cli.model.encoder import Subsampling
from samba_cli.train.augment import NoiseAugment, SpecAugment, speed_perturb
from samba_cli.train.teacher import TeacherLookup, resample_targets


@dataclass(frozen=True)
class Utterance:
    audio: Path  # absolute, or relative to the working directory
    text: str | None  # reference transcript; None for unlabelled audio (trains the distillation loss only)
    duration: float  # seconds
    # the manifest fields asked for through read_manifest's ``fields``, as text
    labels: dict[str, str] = field(default_factory=dict, hash=False)

    def samples(self) -> torch.Tensor:
        """The audio as float32 samples (N,) at 16 kHz."""
        return read_audio(self.audio)


def read_manifest(path: str | os.PathLike, fields: Sequence[str] = ()) -> list[Utterance]:
    """One JSON object per line with "audio", "text", "duration"; relative audio paths are taken relative to the
    manifest's folder. ``"text": null`` marks unlabelled audio (text None). Each of ``fields`` goes into the
    utterance's labels as text (JSON for a non-string value; "" where absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    utterances = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                audio = Path(entry["audio"])
                utterance = Utterance(
                    audio if audio.is_absolute() else path.parent / audio,
                    None if entry["text"] is None else str(entry["text"]),
                    float(entry["duration"]),
                    {name: _label(entry.get(name, "")) for name in fields},
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"{path}:{number}: expected a JSON object with audio, text, duration ({exc})"
                ) from exc
            if not utterance.audio.is_file():
                raise FileNotFoundError(f"{path}:{number}: {utterance.audio}: audio file not found")
            utterances.append(utterance)
    return utterances


def _label(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def read_audio(path: Path) -> torch.Tensor:
    """An audio file -> float32 mono samples (N,) at 16 kHz, decoded as `samba transcribe` decodes it: mono 16 kHz
    WAV/FLAC straight through soundfile, anything else by ffmpeg (resampled, downmixed). A file that cannot be
    decoded raises a one-line ValueError naming it."""
    try:
        return torch.from_numpy(load_audio(path))
    except SambaError as exc:
        raise ValueError(str(exc)) from None


def plan_batches(
    durations: list[float],
    max_seconds: float,
    max_utterances: int,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Group utterance indices into batches of similar duration.

    Utterances are sorted by duration (jittered by up to 10% when ``generator`` is given, so batches differ from
    epoch to epoch), then cut greedily so that batch size x longest duration <= ``max_seconds``. With a generator
    the batch order is shuffled; without one it is shortest first. An utterance longer than ``max_seconds`` gets a
    batch of its own.
    """
    keys = torch.tensor(durations, dtype=torch.float64)
    if generator is not None:
        keys = keys * (1.0 + 0.1 * torch.rand(len(durations), generator=generator, dtype=torch.float64))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for index in torch.argsort(keys, stable=True).tolist():
        longest_with = max(longest, durations[index])
        if current and (len(current) >= max_utterances or (len(current) + 1) * longest_with > max_seconds):
            batches.append(current)
            current, longest_with = [], durations[index]
        current.append(index)
        longest = longest_with
    if current:
        batches.append(current)
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def shard_batches(batches: list, rank: int, world_size: int, multiple: int = 1) -> list:
    """This rank's share: every ``world_size``-th batch, cut so that every rank gets the same number, a multiple
    of ``multiple`` (the gradient accumulation)."""
    per_rank = len(batches) // world_size // multiple * multiple
    return batches[rank::world_size][:per_rank]


@dataclass
class Batch:
    features: torch.Tensor  # (B, n_mels, T) log-mel, zero-padded
    lengths: torch.Tensor  # (B,) valid feature frames
    tokens: torch.Tensor  # (B, L) transcript token ids, padded with pad_id (no bos/eos)
    token_lengths: torch.Tensor  # (B,)
    indices: list[int]  # utterance indices in the manifest or list ([] for batches of a lhotse sampler)
    seconds: float  # audio seconds in the batch (after speed perturbation)
    ids: list[str] = field(default_factory=list)  # utterance ids (lhotse cut ids; manifest line numbers)
    # lhotse repeated these utterances so that every process gets a batch at an epoch's end: trained with weight 0
    repeated: bool = False
    labelled: torch.Tensor | None = None  # (B,) bool: the utterance has a transcript (None: all have)
    teacher: torch.Tensor | None = None  # (B, S, D) teacher targets at the encoder's frame rate, zero-padded
    teacher_frames: torch.Tensor | None = None  # (B,) valid target frames (0: no targets for the utterance)

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.features.to(device, non_blocking=True),
            self.lengths.to(device),
            self.tokens.to(device),
            self.token_lengths.to(device),
            self.indices,
            self.seconds,
            self.ids,
            self.repeated,
            None if self.labelled is None else self.labelled.to(device),
            None if self.teacher is None else self.teacher.to(device, non_blocking=True),
            None if self.teacher_frames is None else self.teacher_frames.to(device),
        )


@dataclass(frozen=True)
class Augmentation:
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)  # speed factors, one drawn uniformly per utterance
    spec_augment: SpecAugment | None = SpecAugment()  # masks on the features (None: off)
    noise: NoiseAugment | None = None  # noise and reverberation of the waveform (None: off)


class BatchDataset(Dataset):
    """Item i is batch ``batches[i]``, loaded and featurised; use with ``DataLoader(batch_size=None)``.

    With augmentation, batch i draws its random numbers from a generator seeded by ``seeds[i]`` only, so the
    same batch comes out in any worker and after a resume.
    """

    def __init__(
        self,
        utterances: list[Utterance],
        token_ids: list[list[int]],
        batches: list[list[int]],
        n_mels: int,
        pad_id: int,
        augmentation: Augmentation | None = None,
        seeds: list[int] | None = None,
        teacher: TeacherLookup | None = None,
    ) -> None:
        if augmentation is not None and (seeds is None or len(seeds) != len(batches)):
            raise ValueError("augmentation needs one seed per batch")
        self.teacher = teacher
        self.utterances = utterances
        self.token_ids = token_ids
        self.batches = batches
        self.n_mels = n_mels
        self.pad_id = pad_id
        self.augmentation = augmentation
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        indices = self.batches[i]
        generator = None
        if self.augmentation is not None:
            generator = torch.Generator().manual_seed(self.seeds[i])
        return make_batch(
            [self.utterances[index].samples() for index in indices],
            [self.token_ids[index] for index in indices],
            self.n_mels,
            self.pad_id,
            self.augmentation if generator is not None else None,
            generator,
            indices=list(indices),
            ids=[str(index + 1) for index in indices],
            labelled=[self.utterances[index].text is not None for index in indices],
            teacher=None if self.teacher is None else [self.teacher.get(index) for index in indices],
            subsampling=4 if self.teacher is None else self.teacher.subsampling,
        )


def make_batch(
    waveforms: list[torch.Tensor],
    token_ids: list[list[int]],
    n_mels: int,
    pad_id: int,
    augmentation: Augmentation | None,
    generator: torch.Generator | None,
    indices: list[int],
    ids: list[str],
    labelled: list[bool] | None = None,
    teacher: list[torch.Tensor | None] | None = None,
    subsampling: int = 4,
) -> Batch:
    """Augment (when ``augmentation`` is given, drawing from ``generator``), featurise with the model's own log-mel
    front end and pad utterances (N,) into one batch.

    ``labelled`` marks the utterances with transcripts (None: all). ``teacher`` holds each utterance's teacher
    targets (S, D) of the clean clip, or None: they are resampled in time to the speed-perturbed clip's
    encoder frames (the model's ``subsampling``), see teacher.resample_targets.
    """
    features = []
    factors = []
    samples_total = 0
    for samples in waveforms:
        factor = 1.0
        if augmentation is not None:
            speeds = augmentation.speeds
            factor = speeds[int(torch.randint(0, len(speeds), (1,), generator=generator))]
            samples = speed_perturb(samples, factor)
            noise = augmentation.noise
            if noise is not None and noise.enabled:
                samples = noise(samples, generator)
        samples_total += samples.shape[0]
        feats = log_mel(samples, n_mels)
        if augmentation is not None and augmentation.spec_augment is not None:
            feats = augmentation.spec_augment(feats, generator)
        features.append(feats)
        factors.append(factor)
    lengths = torch.tensor([f.shape[1] for f in features])
    padded = torch.zeros(len(features), n_mels, int(lengths.max()))
    for row, feats in enumerate(features):
        padded[row, :, : feats.shape[1]] = feats
    token_lengths = torch.tensor([len(row_ids) for row_ids in token_ids])
    tokens = torch.full((len(features), max(1, int(token_lengths.max()))), pad_id, dtype=torch.long)
    for row, row_ids in enumerate(token_ids):
        tokens[row, : token_lengths[row]] = torch.tensor(row_ids, dtype=torch.long)
    batch = Batch(padded, lengths, tokens, token_lengths, indices, samples_total / SAMPLE_RATE, ids)
    if labelled is not None:
        batch.labelled = torch.tensor(labelled, dtype=torch.bool)
    if teacher is not None:
        batch.teacher, batch.teacher_frames = _pad_targets(teacher, lengths, factors, subsampling)
    return batch


def _pad_targets(
    targets: list[torch.Tensor | None], lengths: torch.Tensor, factors: list[float], subsampling: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each utterance's targets, resampled to its encoder frames, in one zero-padded (B, S, D) float32 tensor, and
    the valid frames (B,) (0 where an utterance has none)."""
    frames = Subsampling.output_lengths(lengths, subsampling)
    dim = max((t.shape[1] for t in targets if t is not None), default=1)
    padded = torch.zeros(len(targets), int(frames.max()), dim)
    valid = torch.zeros(len(targets), dtype=torch.long)
    for row, (clean, factor) in enumerate(zip(targets, factors, strict=True)):
        if clean is None:
            continue
        count = int(frames[row])
        padded[row, :count] = resample_targets(clean, count, factor)
        valid[row] = count
    return padded, valid
