"""Model configuration: a frozen dataclass stored as config.json beside the weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

FORMAT_VERSION = 1  # bump when config.json or the tensor layout changes incompatibly


def exact_div(a: int, b: int) -> int:
    if a % b:
        raise ValueError(f"{a} is not divisible by {b}")
    return a // b


@dataclass(frozen=True)
class ModelConfig:
    n_mels: int = 80  # log-mel bins of the input features (10 ms hop)
    subsampling: int = 4  # time reduction of the convolutional front end (power of 2): 4 -> 40 ms frames
    d_model: int = 256  # width of encoder and decoder
    encoder_layers: int = 6  # encoder blocks
    decoder_layers: int = 2  # decoder blocks
    bidirectional: bool = True  # encoder blocks add a time-reversed Mamba-2 pass
    d_state: int = 64  # Mamba-2 state size N
    headdim: int = 32  # Mamba-2 head dimension P
    expand: int = 2  # Mamba-2 inner width = expand * d_model
    d_conv: int = 4  # Mamba-2 causal depthwise convolution width
    ngroups: int = 1  # Mamba-2 B/C groups
    # SSD chunk length: a speed setting (any length gives the same result up to rounding); on CPU, a short
    # chunk wastes less on padding and on the quadratic part inside each chunk
    chunk_size: int = 64
    mlp_ratio: float = 3.0  # gated MLP hidden width / d_model (rounded up to a multiple of 16)
    vocab_size: int = 512  # text tokens (sentencepiece); the CTC head adds one blank at index vocab_size
    cross_attention_heads: int = 4  # heads of the decoder's cross-connection to the encoder
    ctc_head: bool = True  # linear CTC head on the encoder output (needed for segmentation and alignment)
    tie_embeddings: bool = True  # decoder LM head shares the token embedding matrix
    bos_id: int = 1  # decoder start token
    eos_id: int = 2  # decoder end token
    pad_id: int = 3  # padding in training batches (never predicted)
    extra: dict = field(default_factory=dict, compare=False)  # free-form metadata, not used by the model

    def __post_init__(self) -> None:
        if self.subsampling < 1 or self.subsampling & (self.subsampling - 1):
            raise ValueError(f"subsampling must be a power of 2, got {self.subsampling}")
        exact_div(self.d_inner, self.headdim)
        exact_div(self.nheads, self.ngroups)
        exact_div(self.d_model, self.cross_attention_heads)

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return exact_div(self.d_inner, self.headdim)

    @property
    def d_mlp(self) -> int:
        return -(-int(self.mlp_ratio * self.d_model) // 16) * 16

    @property
    def blank_id(self) -> int:
        return self.vocab_size

    @property
    def frame_seconds(self) -> float:
        """Duration of one encoder frame."""
        return 0.01 * self.subsampling

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model fields {unknown}; a newer samba-asr may read them (pip install -U samba-asr)"
            )
        return cls(**data)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    # chunk 32: a training step on ~4-s utterances measured about 20 % faster than with 64 on one CPU core
    "tiny": ModelConfig(
        d_model=192, encoder_layers=6, decoder_layers=2, d_state=32, headdim=32, chunk_size=32
    ),
    "small": ModelConfig(
        d_model=384, encoder_layers=10, decoder_layers=4, d_state=64, headdim=64, cross_attention_heads=6
    ),
    "base": ModelConfig(
        d_model=512,
        encoder_layers=12,
        decoder_layers=6,
        d_state=128,
        headdim=64,
        cross_attention_heads=8,
        vocab_size=1024,
        chunk_size=128,
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named preset (tiny, small, base), optionally with fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
