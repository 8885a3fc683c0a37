"""Tiny random models for tests."""

from samba_cli.model import ModelConfig, SambaASR
from samba_cli.tokenizer import Tokenizer, train_tokenizer

TINY = ModelConfig(
    n_mels=16,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    d_state=8,
    headdim=8,
    chunk_size=8,
    vocab_size=40,
    cross_attention_heads=2,
)


def tiny_model(**overrides) -> SambaASR:
    return SambaASR(TINY.replace(**overrides)).eval()


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a test.",
    "Speech recognition with Mamba state space models.",
]


def train_tiny_tokenizer(directory) -> Tokenizer:
    """A 40-piece sentencepiece model matching TINY.vocab_size."""
    text = directory / "text.txt"
    text.write_text("\n".join(SENTENCES * 20), encoding="utf-8")
    return Tokenizer(train_tokenizer(text, directory / "tokenizer", TINY.vocab_size))
