"""The model a training run starts from: the preset (or the ``init_from`` checkpoint's config) with the tokenizer's
vocabulary and special ids, the training-side initialisation, and the ``init_from`` weights."""

from __future__ import annotations

import torch

from samba_cli.model import ModelConfig, SambaASR, load_checkpoint, preset, read_config
from samba_cli.tokenizer import Tokenizer
from samba_cli.train.config import TrainConfig


def model_config_for(config: TrainConfig, tokenizer: Tokenizer) -> ModelConfig:
    """The preset (or the ``init_from`` checkpoint's config) with the tokenizer's vocabulary and special ids."""
    ids = {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id}
    if min(ids.values()) < 0:
        raise ValueError(
            f"{tokenizer.path}: needs bos, eos and pad pieces; train it with `samba train tokenizer`"
        )
    if config.init_from is None:
        return preset(config.preset, vocab_size=tokenizer.vocab_size, **ids)
    start = read_config(config.init_from)
    if start.vocab_size != tokenizer.vocab_size or any(getattr(start, k) != v for k, v in ids.items()):
        raise ValueError(f"{config.init_from}: its vocabulary does not match the tokenizer {tokenizer.path}")
    return start


def init_weights(model: SambaASR) -> None:
    """Training-side initialisation on top of the modules' own: the (tied) token embedding at std d_model^-0.5.

    nn.Embedding draws N(0, 1); through the tied LM head after the final RMSNorm that gives initial logits of std
    sqrt(d_model) and an attention loss ~25x ln(vocab). At d_model^-0.5 the logits start at unit scale.
    """
    torch.nn.init.normal_(model.decoder.embed.weight, std=model.config.d_model**-0.5)


def initial_model(config: TrainConfig, tokenizer: Tokenizer) -> SambaASR:
    """The run's model before any step, on the CPU: seeded by ``config.seed``, initialised, and holding the
    ``init_from`` checkpoint's weights when there is one (a resumed run then loads state.pt over them)."""
    model_config = model_config_for(config, tokenizer)
    torch.manual_seed(config.seed)
    model = SambaASR(model_config)
    init_weights(model)
    if config.init_from is not None:
        model.load_state_dict(load_checkpoint(config.init_from, backend="torch").state_dict())
    return model
