"""Text <-> token ids through a sentencepiece model (tokenizer.model in the checkpoint folder)."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import sentencepiece as spm

from samba_cli.errors import CheckpointError

GLUE_PUNCTUATION = ",;:!?"  # after a letter and one of these, a letter begins a new word even without a space


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
        """Text of token ids (bos, eos and pad dropped), with a space put back where a word is glued to the
        punctuation before it (see :meth:`word_starts`) and runs of spaces made one."""
        ids = [i for i in ids if i not in self.special_ids]
        glued = [k for k, start in enumerate(self.word_starts(ids)) if start and not self.starts_word(ids[k])]
        cuts = [0, *glued, len(ids)]
        text = " ".join(self.sp.decode(ids[a:b]) for a, b in zip(cuts, cuts[1:], strict=False))
        return re.sub(" {2,}", " ", text)  # a bare word-start piece before another word start adds no space

    def word_starts(self, ids: list[int]) -> list[bool]:
        """Which tokens begin a word: those whose piece starts with the sentencepiece space mark, and those that
        start with a letter right after a letter and one of ``, ; : ! ?`` (a model that left out the space after
        punctuation: "evaluation,optical" is two words)."""
        starts, tail = [], ""
        for i in ids:
            piece = self.pieces[i]
            text = "" if i in self.special_ids else piece.replace("\u2581", " ")
            glued = (
                text[:1].isalpha() and len(tail) == 2 and tail[0].isalpha() and tail[1] in GLUE_PUNCTUATION
            )
            starts.append(piece.startswith("\u2581") or glued)
            tail = (tail + text)[-2:]
        return starts

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
