"""Training options: one frozen dataclass, saved as train_config.json in the run folder."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from samba_cli.atomic import write_atomically


class Schedule(str, Enum):
    """Learning-rate decay after the linear warmup."""

    cosine = "cosine"
    linear = "linear"


@dataclass(frozen=True)
class TrainConfig:
    # data and model
    train_manifest: str  # JSONL manifest ({"audio", "text", "duration"} per line) or lhotse CutSet
    tokenizer: str  # sentencepiece model (`samba train tokenizer`); the model's vocab_size follows it
    out_dir: str = "runs/samba"  # run folder: config, training state, checkpoints, metrics
    dev_manifest: str | None = None  # JSONL manifest or CutSet for validation loss and WER (None: none)
    preset: str = "tiny"  # model preset (tiny, small, base)
    init_from: str | None = None  # checkpoint folder to start a new run from (its config and weights)
    min_duration: float = 0.3  # seconds: shorter utterances are skipped
    max_duration: float = 30.0  # seconds: longer utterances are skipped
    # batches
    max_batch_seconds: float = 600.0  # audio per batch: utterances x longest (JSONL), summed (CutSets)
    max_batch_utterances: int = 64  # utterances per batch at most
    buckets: int = 30  # duration buckets of lhotse's DynamicBucketingSampler (CutSets only)
    accumulate: int = 4  # batches per optimizer step (effective batch = accumulate x GPUs x batch)
    workers: int = 2  # DataLoader processes that read audio and compute features (0: in the main process)
    # augmentation
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)  # speed perturbation factors, one drawn per utterance
    freq_masks: int = 2  # SpecAugment frequency masks per utterance
    freq_mask_width: int = 27  # widest frequency mask, in mel bins
    time_masks: int = 2  # SpecAugment time masks per utterance
    time_mask_width: int = 40  # widest time mask, in 10 ms frames
    time_mask_ratio: float = 0.2  # a time mask covers at most this fraction of the utterance
    freq_warp: float = 0.0  # vocal-tract-length warp of the mel axis by a factor in 1 +- freq_warp (0: off)
    envelope_db: float = 0.0  # random smooth spectral envelope (tilt, broad bumps) of up to +- this many dB
    noise_prob: float = 0.0  # share of utterances given white, pink or brown noise, drawn afresh each time
    noise_snr: tuple[float, float] = (5.0, 25.0)  # SNR range of that noise, dB
    reverb_prob: float = 0.0  # share of utterances given synthetic room reverberation, drawn afresh each time
    reverb_rt60: tuple[float, float] = (0.15, 0.8)  # RT60 range of that reverberation, seconds
    # optimisation
    lr: float = 1e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on norms, biases, _no_weight_decay)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    warmup_steps: int = 1000  # linear warmup from 0 to lr
    max_steps: int = 100_000  # optimizer steps in the whole run; the schedule decays to its end
    schedule: Schedule = Schedule.cosine  # decay after warmup
    min_lr_ratio: float = 0.05  # the schedule ends at lr x min_lr_ratio
    clip_grad_norm: float = 1.0  # gradient clipping by global norm (0: off)
    ctc_weight: float = 0.3  # loss = ctc_weight x CTC + (1 - ctc_weight) x attention cross-entropy
    label_smoothing: float = 0.1  # label smoothing of the attention cross-entropy
    # distillation from a teacher's encoder (recipes/teacher/targets.py builds the targets)
    distill_targets: str | None = None  # teacher targets folder; enables the distillation loss (None: off)
    distill_weight: float = 1.0  # loss += distill_weight x (L1 - log sigmoid(cosine)) to the teacher's frames
    distill_layer: int = 0  # encoder block (1-based) whose output predicts the teacher (0: the last)
    # runtime
    device: str = "auto"  # auto, cpu, cuda, cuda:N (under torchrun: the local GPU)
    backend: str = "auto"  # SSD backend: auto, torch, fused (mamba-ssm kernels, CUDA)
    bf16: bool = True  # bfloat16 autocast on CUDA
    cpu_bf16: bool = False  # bfloat16 autocast on CPU too (off: CPU trains in float32)
    threads: int = 0  # CPU threads for torch (0: torch's default)
    seed: int = 0  # seeds model init, batch order and augmentation
    log_every: int = 10  # steps between progress lines
    save_every: int = 1000  # steps between checkpoints (training state + model weights)
    keep_every: int = 0  # steps between copies of the weights kept as snapshots/step-N (0: none)
    val_every: int = 0  # steps between validations besides each epoch end (0: epoch ends only)
    val_attention: bool = True  # validation also decodes greedily with the attention decoder

    def __post_init__(self) -> None:
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if self.accumulate < 1 or self.max_steps < 1 or self.save_every < 1 or self.log_every < 1:
            raise ValueError("accumulate, max_steps, save_every and log_every must be positive")
        if self.distill_weight < 0 or self.distill_layer < 0:
            raise ValueError("distill_weight and distill_layer must not be negative")
        if self.buckets < 1:
            raise ValueError(f"buckets must be positive, got {self.buckets}")
        if self.keep_every < 0:
            raise ValueError(f"keep_every must be 0 (off) or positive, got {self.keep_every}")
        if not self.speeds or min(self.speeds) <= 0:
            raise ValueError(f"speeds must be positive factors, got {self.speeds}")
        if not 0.0 <= self.freq_warp < 0.5:
            raise ValueError(f"freq_warp must be in [0, 0.5), got {self.freq_warp}")
        if not 0.0 <= self.envelope_db <= 40.0:
            raise ValueError(f"envelope_db must be in [0, 40], got {self.envelope_db}")
        for name in ("noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name, low in (("noise_snr", -float("inf")), ("reverb_rt60", 0.0)):
            pair = tuple(float(v) for v in getattr(self, name))
            if len(pair) != 2 or pair[0] > pair[1] or pair[0] <= low:
                raise ValueError(f"{name} must be two ascending values (LOW,HIGH), got {getattr(self, name)}")
            object.__setattr__(self, name, pair)
        object.__setattr__(self, "schedule", Schedule(self.schedule))
        object.__setattr__(self, "speeds", tuple(float(s) for s in self.speeds))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["schedule"] = self.schedule.value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}")
        return cls(**data)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file, then a rename): other ranks may be reading it."""
        write_atomically(path, lambda stream: stream.write(json.dumps(self.to_dict(), indent=2) + "\n"))

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


# Options that may change when a run is resumed: they do not change what is computed.
RUNTIME_FIELDS = frozenset(
    {"out_dir", "workers", "device", "threads", "log_every", "save_every", "keep_every", "val_every"}
)


def field_help() -> dict[str, str]:
    """The comment of every TrainConfig field, by name: the command line's help texts."""
    return dict(
        re.findall(r"^\s+(\w+): [^#\n]+#\s*(.+)$", inspect.getsource(TrainConfig), flags=re.MULTILINE)
    )
