"""What a training run reads: its training and dev sets, and the batches of each epoch for one rank.

A JSONL manifest is read into memory and planned by :func:`~samba_cli.train.data.plan_batches`; a lhotse CutSet is
read lazily and batched by its DynamicBucketingSampler. Batches and their augmentation seeds depend on the seed, the
epoch, the world size and the batch index only: exact resume (:mod:`samba_cli.train.loop`) rests on that.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader

from samba_cli.model import ModelConfig
from samba_cli.tokenizer import Tokenizer
from samba_cli.train.augment import NoiseAugment, SpecAugment
from samba_cli.train.config import TrainConfig
from samba_cli.train.cuts import (
    CutBatchDataset,
    EpochBatches,
    SamplerOptions,
    is_cutset,
    open_cuts,
    read_cut_utterances,
)
from samba_cli.train.data import (
    Augmentation,
    Batch,
    BatchDataset,
    Utterance,
    plan_batches,
    read_manifest,
    shard_batches,
)
from samba_cli.train.distill import check_labels, teacher_lookup
from samba_cli.train.distributed import World
from samba_cli.train.teacher import TeacherTargets


class TrainData:
    """The training set (in memory, or a lazy CutSet), the dev set, and the batches of both for one rank."""

    def __init__(
        self,
        config: TrainConfig,
        tokenizer: Tokenizer,
        model_config: ModelConfig,
        teacher: TeacherTargets | None,
    ) -> None:
        self.config = config
        self.model_config = model_config
        # A lhotse CutSet is read lazily, batch by batch; a JSONL manifest into memory.
        self.train_cuts = None
        self.train_set: list[Utterance] = []
        if is_cutset(config.train_manifest):
            if teacher is not None:
                raise ValueError(
                    f"{config.train_manifest}: distillation needs a JSONL manifest, not a CutSet"
                )
            self.train_cuts = open_cuts(config.train_manifest, config.min_duration, config.max_duration)
        else:
            self.train_set = [
                u
                for u in read_manifest(config.train_manifest)
                if config.min_duration <= u.duration <= config.max_duration
            ]
            if not self.train_set:
                raise ValueError(f"{config.train_manifest}: no utterances between min and max duration")
            check_labels(self.train_set, config.train_manifest, teacher is not None)
        # distillation: the teacher's targets of each utterance, and a line that says how many were found
        self.lookup, self.lookup_line = None, ""
        if teacher is not None:
            self.lookup, self.lookup_line = teacher_lookup(
                self.train_set, config.train_manifest, teacher, model_config.subsampling
            )
        self.train_tokens = [tokenizer.encode(u.text) if u.text else [] for u in self.train_set]
        self.dev_set: list = []
        if config.dev_manifest:
            dev = config.dev_manifest
            dev_set = read_cut_utterances(dev) if is_cutset(dev) else read_manifest(dev)
            self.dev_set = [u for u in dev_set if u.text is not None]  # validation needs transcripts
        self.dev_tokens = [tokenizer.encode(u.text) for u in self.dev_set]
        self.augmentation = Augmentation(
            config.speeds,
            SpecAugment(
                config.freq_masks,
                config.freq_mask_width,
                config.time_masks,
                config.time_mask_width,
                config.time_mask_ratio,
                config.freq_warp,
                config.envelope_db,
            ),
            NoiseAugment(config.noise_prob, config.noise_snr, config.reverb_prob, config.reverb_rt60),
        )

    def _epoch_shard(self, epoch: int, world: World) -> list[tuple[list[int], int]]:
        """This rank's (batch, augmentation seed) pairs of ``epoch``: the same on every run with the same seed."""
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        plan = plan_batches(
            [u.duration for u in self.train_set],
            self.config.max_batch_seconds,
            self.config.max_batch_utterances,
            generator,
        )
        seeds = torch.randint(0, 2**62, (len(plan),), generator=generator).tolist()
        return shard_batches(
            list(zip(plan, seeds, strict=True)), world.rank, world.size, self.config.accumulate
        )

    def epoch_batches(self, epoch: int, start: int, world: World) -> DataLoader:
        """This rank's batches of ``epoch`` from batch ``start`` on, loaded and featurised by DataLoader workers."""
        if self.train_cuts is not None:
            options = SamplerOptions(
                self.config.max_batch_seconds,
                self.config.max_batch_utterances,
                self.config.buckets,
                self.config.seed,
            )
            sampler = EpochBatches(self.train_cuts, options, epoch, world.rank, world.size, start)
            dataset = CutBatchDataset(
                self.config.tokenizer,
                self.model_config.n_mels,
                self.model_config.pad_id,
                self.augmentation,
            )
            return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=self.config.workers)
        rest = self._epoch_shard(epoch, world)[start:]
        dataset = BatchDataset(
            self.train_set,
            self.train_tokens,
            [batch for batch, _ in rest],
            self.model_config.n_mels,
            self.model_config.pad_id,
            self.augmentation,
            [seed for _, seed in rest],
            self.lookup,
        )
        return DataLoader(dataset, batch_size=None, num_workers=self.config.workers)

    def dev_batches(self, world: World) -> DataLoader:
        """This rank's share of the dev set in duration batches, without augmentation."""
        plan = plan_batches(
            [u.duration for u in self.dev_set],
            self.config.max_batch_seconds,
            self.config.max_batch_utterances,
        )
        shard = plan[world.rank :: world.size]
        dataset = BatchDataset(
            self.dev_set, self.dev_tokens, shard, self.model_config.n_mels, self.model_config.pad_id
        )
        return DataLoader(dataset, batch_size=None, num_workers=self.config.workers)


def groups(batches: Iterable[Batch], size: int) -> Iterator[tuple[list[Batch], bool]]:
    """Consecutive groups of ``size`` batches (an epoch's last group may be smaller), each with whether it is the
    last; one batch is looked ahead to know."""
    iterator = iter(batches)
    upcoming = next(iterator, None)
    while upcoming is not None:
        group: list[Batch] = []
        while upcoming is not None and len(group) < size:
            group.append(upcoming)
            upcoming = next(iterator, None)
        yield group, upcoming is None
