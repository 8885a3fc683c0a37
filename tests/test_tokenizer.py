"""Token ids <-> text: the bundled model's sentencepiece tokenizer (a real 256-piece vocabulary)."""

import pytest

from samba_cli.hub import BUNDLED_MODELS, DEFAULT_MODEL
from samba_cli.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer(BUNDLED_MODELS[DEFAULT_MODEL] / "tokenizer.model")


@pytest.mark.parametrize(
    "text",
    [
        "Hello world, this is a test.",
        "Don't stop: well-known words; yes! Why?",
        "It cost coins, e.g. gold.",
    ],
)
def test_text_round_trips_and_words_start_at_spaces(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == tokenizer.sp.decode(ids) == text
    assert tokenizer.word_starts(ids) == [tokenizer.starts_word(i) for i in ids]


def test_a_word_glued_to_punctuation_is_split(tokenizer):
    tail = tokenizer.encode("optical")
    assert tokenizer.piece(tail[0]) == "\u2581"  # "optical" has no piece of its own: drop the bare space mark
    glued = tokenizer.encode("evaluation,") + tail[1:]
    assert tokenizer.sp.decode(glued) == "evaluation,optical"
    assert tokenizer.decode(glued) == "evaluation, optical"
    starts = tokenizer.word_starts(glued)
    assert sum(starts) == 2 and starts[len(glued) - len(tail) + 1]
    # after a full stop nothing is split (e.g.), nor inside a word (well-known, don't)
    for text in ("e.g.", "well-known", "don't"):
        ids = tokenizer.encode(text)
        assert sum(tokenizer.word_starts(ids)) == 1 and tokenizer.decode(ids) == text


def test_a_bare_word_start_before_a_word_adds_no_space(tokenizer):
    bare = tokenizer.sp.piece_to_id("\u2581")
    assert tokenizer.piece(bare) == "\u2581"
    ids = tokenizer.encode("document") + [bare] + tokenizer.encode("scanning")
    assert "  " in tokenizer.sp.decode(ids)
    assert tokenizer.decode(ids) == "document scanning"
