"""Training and evaluation: manifests, duration batches, augmentation, the joint CTC + attention loop, WER."""

from samba_cli.train.config import Schedule, TrainConfig
from samba_cli.train.evaluate import EvalReport
from samba_cli.train.loop import train

__all__ = ["EvalReport", "Schedule", "TrainConfig", "train"]
