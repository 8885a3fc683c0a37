"""lhotse corpora: CutSets (jsonl.gz manifests, Shar folders, local or URL) -> dynamic duration buckets -> batches.

lhotse reads the audio and groups cuts into batches; the features come from the model's own front end
(``features.log_mel``) and the augmentations from ``train.augment``, exactly as for the project's JSONL manifests.
Needs the ``lhotse`` extra (``pip install 'samba-asr[lhotse]'``); it is imported only when a CutSet is used.

Sampler state: the batches of an epoch are a function of (seed, epoch, world size, options), and each batch's
augmentation of (seed, epoch, rank, batch index). A run resumes by skipping the batches its rank has consumed
(``Position.batch``), which is what lhotse's own ``load_state_dict`` does; lhotse's ``state_dict`` would count the
batches a DataLoader has prefetched rather than those trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from samba_cli.features import SAMPLE_RATE
from samba_cli.tokenizer import Tokenizer
from samba_cli.train.data import Augmentation, Batch, make_batch

URL_SCHEMES = ("http://", "https://", "s3://", "gs://", "az://", "pipe:")
# lhotse's suffix for a cut it repeats when fewer cuts than processes are left at an epoch's end (each process
# then gets a batch of one cut); such batches are trained with weight 0, so every cut counts once per epoch.
DUPLICATE = re.compile(r"_dup\d+$")


def is_cutset(source: str) -> bool:
    """True for a lhotse CutSet: a Shar folder or Shar field list (.json), a .jsonl.gz manifest or a URL, or a
    JSONL file whose first line is a cut; False for the project's JSONL manifest ({"audio", "text", ...})."""
    if source.startswith(URL_SCHEMES) or source.endswith((".jsonl.gz", ".json")):
        return True
    path = Path(source)
    if path.is_dir():
        return True
    if not path.is_file():
        return False
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(entry, dict) and "audio" not in entry and "recording" in entry
    return False


def _lhotse():
    try:
        import lhotse
    except ImportError:
        raise ValueError("lhotse CutSets need the lhotse package: pip install 'samba-asr[lhotse]'") from None
    return lhotse


def open_cuts(source: str, min_duration: float = 0.0, max_duration: float = float("inf")):
    """A lazy CutSet from a jsonl.gz manifest (path or URL), a Shar folder, or a .json file naming Shar shards by
    field ({"cuts": [...], "recording": [...]}, paths or URLs); cuts outside [min, max] seconds are left out."""
    lhotse = _lhotse()
    path = Path(source)
    if path.is_dir():
        if not any(path.glob("cuts.*")):
            raise ValueError(f"{source}: not a lhotse Shar folder (no cuts.* shards)")
        cuts = lhotse.CutSet.from_shar(in_dir=path)
    elif source.endswith(".json"):
        with lhotse.serialization.open_best(source) as text:
            fields = json.load(text)
        if not isinstance(fields, dict) or "cuts" not in fields:
            raise ValueError(f'{source}: expected a JSON object of Shar shards with a "cuts" list')
        cuts = lhotse.CutSet.from_shar(fields=fields)
    else:
        if not source.startswith(URL_SCHEMES) and not path.is_file():
            raise FileNotFoundError(f"{source}: manifest not found")
        cuts = lhotse.CutSet.from_jsonl_lazy(source)
    return cuts.filter(DurationFilter(min_duration, max_duration))


@dataclass(frozen=True)
class DurationFilter:
    """Keeps cuts of min..max seconds (a class rather than a lambda: lhotse may pickle it into workers)."""

    min_duration: float
    max_duration: float

    def __call__(self, cut) -> bool:
        return self.min_duration <= cut.duration <= self.max_duration


def cut_text(cut) -> str:
    """The transcript of a cut: its supervisions' texts, in order."""
    return " ".join(s.text.strip() for s in cut.supervisions if s.text and s.text.strip())


def cut_samples(cut) -> torch.Tensor:
    """A cut's audio as float32 mono samples (N,) at 16 kHz (lhotse resamples other rates)."""
    if cut.sampling_rate != SAMPLE_RATE:
        cut = cut.resample(SAMPLE_RATE)
    try:
        audio = cut.load_audio()
    except Exception as exc:  # lhotse raises many kinds (soundfile, audioread, tar, network)
        raise ValueError(f"cut {cut.id}: cannot read audio: {str(exc).splitlines()[0]}") from None
    return torch.from_numpy(np.asarray(audio, dtype=np.float32).mean(axis=0))


@dataclass(frozen=True)
class CutUtterance:
    """A cut as the validation and evaluation code sees an utterance (text, duration, samples())."""

    cut: object  # lhotse Cut
    text: str
    duration: float

    @property
    def audio(self) -> str:  # shown in reports where a file path would be
        return self.cut.id

    def samples(self) -> torch.Tensor:
        return cut_samples(self.cut)


def read_cut_utterances(source: str) -> list[CutUtterance]:
    """A (small) CutSet read into memory, e.g. a dev set for validation."""
    return [CutUtterance(cut, cut_text(cut), cut.duration) for cut in open_cuts(source)]


@dataclass(frozen=True)
class SamplerOptions:
    max_seconds: float  # audio seconds per batch (sum of cut durations; buckets keep them of similar length)
    max_utterances: int  # cuts per batch at most
    buckets: int  # duration buckets
    seed: int  # the same on every rank: ranks draw from one shuffled stream


def batch_seed(seed: int, epoch: int, rank: int, index: int) -> int:
    """The augmentation seed of batch ``index`` of ``rank`` in ``epoch``."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{rank}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


class EpochBatches:
    """This rank's batches of one epoch as (augmentation seed, CutSet) pairs, from lhotse's
    DynamicBucketingSampler; ``start`` batches already trained on are skipped (drawn, not loaded)."""

    def __init__(self, cuts, options: SamplerOptions, epoch: int, rank: int, world_size: int, start: int = 0):
        from lhotse.dataset import DynamicBucketingSampler

        self.sampler = DynamicBucketingSampler(
            cuts,
            max_duration=options.max_seconds,
            max_cuts=options.max_utterances,
            num_buckets=options.buckets,
            shuffle=True,
            drop_last=False,  # the last batches are shared out: every cut once per epoch, on one rank
            seed=options.seed,
            world_size=world_size,
            rank=rank,
        )
        self.sampler.set_epoch(epoch)
        self.options = options
        self.epoch = epoch
        self.rank = rank
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, object]]:
        for index, cuts in enumerate(self.sampler):
            if index >= self.start:
                yield batch_seed(self.options.seed, self.epoch, self.rank, index), cuts


class CutBatchDataset(Dataset):
    """Item (seed, CutSet) -> Batch: audio through lhotse, augmentation drawn from a generator seeded by ``seed``
    only (so the same batch comes out in any DataLoader worker and after a resume), the model's log-mel features.
    Use with ``DataLoader(dataset, sampler=EpochBatches(...), batch_size=None)``."""

    def __init__(
        self, tokenizer: str, n_mels: int, pad_id: int, augmentation: Augmentation | None = None
    ) -> None:
        self.tokenizer_path = tokenizer
        self.n_mels = n_mels
        self.pad_id = pad_id
        self.augmentation = augmentation

    @cached_property
    def tokenizer(self) -> Tokenizer:  # loaded in the worker process that uses it
        return Tokenizer(self.tokenizer_path)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "tokenizer"}

    def __getitem__(self, item: tuple[int, object]) -> Batch:
        seed, cuts = item
        cuts = list(cuts)
        generator = torch.Generator().manual_seed(seed) if self.augmentation is not None else None
        batch = make_batch(
            [cut_samples(cut) for cut in cuts],
            [self.tokenizer.encode(cut_text(cut)) for cut in cuts],
            self.n_mels,
            self.pad_id,
            self.augmentation,
            generator,
            indices=[],
            ids=[cut.id for cut in cuts],
        )
        batch.repeated = all(DUPLICATE.search(cut.id) for cut in cuts)
        return batch
