"""The converted Whisper tiny.en in transformers: loading and transcription (clips in batches, long audio chunked
in 30 s windows by transformers' ASR pipeline).

    peer = load_whisper(Path("/work/data/whisper-tiny-en-torch"), device="cuda", dtype=torch.float16)
    texts = transcribe_clips(peer, [samples, ...], batch_size=32)      # float32 16 kHz arrays
    text = transcribe_long(peer, samples, batch_size=32)               # chunk_length_s=30, 5 s strides
"""

from __future__ import annotations

import logging
import lzma
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.whisper_torch.convert import PACKED, unpack_int8

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class WhisperPeer:
    """A loaded Whisper with what it needs to turn audio into text."""

    model: object  # transformers WhisperForConditionalGeneration, eval mode, on its device and dtype
    features: object  # transformers WhisperFeatureExtractor (log-mel of 30 s windows, on the CPU)
    tokenizer: object  # transformers Whisper tokenizer from tokenizer.json
    weights: str  # "float" (model.safetensors) or "int8" (the packed form, dequantised)


def _tokenizer_file(folder: Path) -> Path:
    """``tokenizer.json``, or the copy of it that benchmarks/gpu/pack.py packed as ``tokenizer.json.xz``,
    unpacked once into a temporary folder."""
    plain = folder / "tokenizer.json"
    if plain.exists() or not (folder / "tokenizer.json.xz").exists():
        return plain
    unpacked = Path(tempfile.mkdtemp(prefix="whisper-tokenizer-")) / "tokenizer.json"
    unpacked.write_bytes(lzma.decompress((folder / "tokenizer.json.xz").read_bytes()))
    return unpacked


def _state_dict(folder: Path, weights: str) -> dict[str, torch.Tensor]:
    if weights == "int8":
        return {k: torch.from_numpy(v) for k, v in unpack_int8((folder / PACKED).read_bytes()).items()}
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(folder / "model.safetensors").items()}


def load_whisper(
    folder: Path, device: str = "cpu", dtype: torch.dtype = torch.float32, weights: str = "auto"
) -> WhisperPeer:
    """Load the converted model in ``folder`` (see ``convert``). ``weights``: "float" (model.safetensors),
    "int8" (the packed form), or "auto" (float when model.safetensors is there)."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )
    from transformers.generation import GenerationConfig

    if weights == "auto":
        weights = "float" if (folder / "model.safetensors").exists() else "int8"
    if not (folder / "config.json").exists():
        raise SystemExit(
            f"error: {folder}: no config.json (make it with python -m benchmarks.whisper_torch.convert)"
        )
    model = WhisperForConditionalGeneration(WhisperConfig.from_pretrained(folder))
    state = _state_dict(folder, weights)
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]  # tied
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(
            f"error: {folder}: weights do not fit the model: missing {missing}, unexpected {unexpected}"
        )
    model.generation_config = GenerationConfig.from_pretrained(folder)
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(_tokenizer_file(folder)))
    tokenizer.pad_token = "<|endoftext|>"  # batches are padded (the pipeline refuses to batch without it)
    timestamps = model.config.vocab_size - len(tokenizer)  # tokenizer.json stops at <|notimestamps|>
    if timestamps > 0:  # <|0.00|> ... <|30.00|>, as vocabulary.txt lists them after it
        tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(timestamps)], special_tokens=True)
    features = WhisperFeatureExtractor.from_pretrained(folder)
    return WhisperPeer(model, features, tokenizer, weights)


@torch.inference_mode()
def transcribe_clips(
    peer: WhisperPeer, clips: list[np.ndarray], batch_size: int = 16, num_beams: int = 1
) -> list[str]:
    """Text of each clip (at most 30 s each), decoded in batches: (B, 80, 3000) log-mel, then ``generate``
    without timestamps."""
    model = peer.model
    texts: list[str] = []
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        inputs = peer.features(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        features = inputs.input_features.to(device=model.device, dtype=model.dtype)
        tokens = model.generate(features, num_beams=num_beams)
        texts += [t.strip() for t in peer.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    return texts


def transcribe_long(
    peer: WhisperPeer, audio: np.ndarray, batch_size: int = 16, num_beams: int = 1, timestamps: bool = True
) -> str:
    """Text of a recording of any length, as transformers' ASR pipeline does it: 30 s windows overlapping by
    5 s on each side (``chunk_length_s=30``), decoded in batches, the overlaps merged (by the predicted
    timestamps with ``timestamps``, else by the longest common token sequence)."""
    from transformers import pipeline

    asr = pipeline(
        "automatic-speech-recognition",
        model=peer.model,
        tokenizer=peer.tokenizer,
        feature_extractor=peer.features,
        chunk_length_s=30,
        batch_size=batch_size,
        device=peer.model.device,
        dtype=peer.model.dtype,
        ignore_warning=True,  # its warning: chunking is experimental for seq2seq models
    )
    with torch.inference_mode():
        result = asr(
            {"raw": audio.astype(np.float32), "sampling_rate": SAMPLE_RATE},
            generate_kwargs={"num_beams": num_beams},
            return_timestamps=timestamps,
        )
    return result["text"].strip()
