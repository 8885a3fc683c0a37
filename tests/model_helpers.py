"""Tiny random models for tests."""

from samba_cli.model import ModelConfig, SambaASR

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
