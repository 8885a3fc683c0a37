"""Growing a trained model deeper without changing what it computes (block expansion).

A model trained on CPUs for many hours cannot be retrained from scratch at a larger size in one session, but it can
be made deeper and trained on: each new block is a copy of the block below it whose residual branches end in
zeroed output projections (the Mamba-2 mixers' ``out_proj``, the decoder's cross-attention ``out_proj`` and the
MLP's ``down``). Every block adds its branches to the residual stream, so a block whose branches output zero is the
identity and the grown model computes exactly what the original did. Training then moves the zeroed projections
first. The new blocks are spread evenly: one after every ``old / added`` original blocks, the last one on top (as in
LLaMA Pro's block expansion, arXiv 2401.02415).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from samba_cli.errors import OptionError
from samba_cli.model import SambaASR
from samba_cli.model.checkpoint import TOKENIZER_FILE, load_checkpoint, read_config_file, save_checkpoint

# the last Linear of every residual branch of an encoder or decoder block
_BRANCH_OUTPUTS = ("out_proj", "down")


def expansion_plan(old: int, new: int) -> list[int | None]:
    """For each of the ``new`` blocks, the original block it is (an int), or None for an inserted identity copy of
    the block before it. The ``new - old`` copies are spread evenly, the last one after the top block."""
    if new < old:
        raise ValueError(f"cannot grow {old} blocks into {new}: growing only adds blocks")
    added = new - old
    plan: list[int | None] = []
    for index in range(old):
        plan.append(index)
        plan.extend([None] * ((index + 1) * added // old - index * added // old))
    return plan


def identity_copy(block: nn.Module) -> nn.Module:
    """A copy of ``block`` whose residual branches output zero (so the block is the identity)."""
    clone = copy.deepcopy(block)
    for name, module in clone.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in _BRANCH_OUTPUTS:
            with torch.no_grad():
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
    return clone


def _expand(blocks: nn.ModuleList, count: int) -> nn.ModuleList:
    expanded: list[nn.Module] = []
    for source in expansion_plan(len(blocks), count):
        expanded.append(blocks[source] if source is not None else identity_copy(expanded[-1]))
    return nn.ModuleList(expanded)


def grow_model(
    model: SambaASR, encoder_layers: int | None = None, decoder_layers: int | None = None
) -> SambaASR:
    """A deeper copy of ``model`` that computes the same outputs (up to float rounding). None keeps a depth."""
    config = model.config
    encoder_layers = config.encoder_layers if encoder_layers is None else encoder_layers
    decoder_layers = config.decoder_layers if decoder_layers is None else decoder_layers
    for option, new, old in (
        ("--encoder-layers", encoder_layers, config.encoder_layers),
        ("--decoder-layers", decoder_layers, config.decoder_layers),
    ):
        if new < old:
            raise OptionError(f"{option} {new}: the model has {old}; growing only adds layers", option)
    grown = SambaASR(config.replace(encoder_layers=encoder_layers, decoder_layers=decoder_layers))
    grown.to(next(model.parameters()).device)
    state = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(("encoder.blocks.", "decoder.blocks."))
    }
    for prefix, blocks, count in (
        ("encoder.blocks", model.encoder.blocks, encoder_layers),
        ("decoder.blocks", model.decoder.blocks, decoder_layers),
    ):
        for name, tensor in _expand(blocks, count).state_dict().items():
            state[f"{prefix}.{name}"] = tensor
    grown.load_state_dict(state, strict=True)  # copies: the grown model shares no tensor with ``model``
    grown.set_backend(model.backend)
    return grown.eval()


def grow_checkpoint(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    encoder_layers: int | None = None,
    decoder_layers: int | None = None,
) -> Path:
    """Write the grown model of ``folder`` (config, weights in float32, tokenizer) as the model folder ``out``.

    ``out``'s metadata is ``folder``'s plus ``grown_from`` (the folder and its depths), so a model card can say so.
    """
    folder = Path(folder)
    model = load_checkpoint(folder, backend="torch")
    grown = grow_model(model, encoder_layers, decoder_layers)
    metadata = dict(read_config_file(folder).get("metadata") or {})
    metadata["grown_from"] = {
        "model": str(folder),
        "encoder_layers": model.config.encoder_layers,
        "decoder_layers": model.config.decoder_layers,
    }
    tokenizer = folder / TOKENIZER_FILE
    return save_checkpoint(
        grown, out, tokenizer_file=tokenizer if tokenizer.is_file() else None, metadata=metadata
    )
