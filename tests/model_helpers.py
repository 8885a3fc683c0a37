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


# A bigram language model small enough to check by hand (log10 probabilities, back-off weights).
TINY_ARPA = """\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.5
-0.7\t</s>\t0
-0.6\tcat\t-0.2
-0.8\that\t-0.3
-0.5\tthe\t-0.1

\\2-grams:
-0.3\t<s> the
-0.2\tthe cat
-0.9\tthe hat
-0.1\tcat </s>

\\end\\
"""


def write_tiny_lm(path) -> bytes:
    """Write TINY_ARPA gzip-compressed (as a model folder's lm.arpa.gz) to ``path``; returns the bytes."""
    import gzip

    data = gzip.compress(TINY_ARPA.encode(), mtime=0)
    path.write_bytes(data)
    return data
