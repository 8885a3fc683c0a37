"""Samba-ASR model: config, Mamba-2 mixer, encoder, decoder, checkpoints."""

from samba_cli.model.checkpoint import load_checkpoint, read_config, save_checkpoint
from samba_cli.model.config import PRESETS, ModelConfig, preset
from samba_cli.model.decoder import DecoderState
from samba_cli.model.samba import ModelOutput, SambaASR

__all__ = [
    "PRESETS",
    "DecoderState",
    "ModelConfig",
    "ModelOutput",
    "SambaASR",
    "load_checkpoint",
    "preset",
    "read_config",
    "save_checkpoint",
]
