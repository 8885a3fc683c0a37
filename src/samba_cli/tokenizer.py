"""Text <-> token ids through a sentencepiece model (tokenizer.model in the checkpoint folder)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import sentencepiece as spm

from samba_cli.errors import CheckpointError


class Tokenizer:
    def __init__(self, model_file: str | os.PathLike) -> None:
        path = Path(model_file)
        if not path.is_file():
            raise CheckpointError(f"{path}: tokenizer model not found")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: not a sentencepiece model ({exc})") from exc
        self.path = path

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i not in self.special_ids])

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(i for i in (self.bos_id, self.eos_id, self.pad_id) if i >= 0)

    @functools.cached_property
    def pieces(self) -> list[str]:
        """Every piece, by token id."""
        return [self.sp.id_to_piece(i) for i in range(self.vocab_size)]

    def piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def starts_word(self, token_id: int) -> bool:
        """True when the token begins a new word (its piece starts with the sentencepiece space mark)."""
        return self.sp.id_to_piece(token_id).startswith("\u2581")


def train_tokenizer(
    text_file: str | os.PathLike,
    model_prefix: str | os.PathLike,
    vocab_size: int,
    model_type: str = "unigram",
) -> Path:
    """Train a sentencepiece model with the ids the decoder expects: unk 0, bos 1, eos 2, pad 3."""
    spm.SentencePieceTrainer.train(
        input=str(text_file),
        model_prefix=str(model_prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        normalization_rule_name="identity",
        minloglevel=2,
    )
    return Path(f"{model_prefix}.model")
