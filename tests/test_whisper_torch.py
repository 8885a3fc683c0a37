"""benchmarks/whisper_torch: the CTranslate2 model.bin reader, the mapping into transformers' Whisper and the int8
travelling form, on tiny models written by the test in CTranslate2's layout."""

import struct

import numpy as np
import pytest
import torch

from benchmarks.whisper_torch.convert import (
    WhisperDims,
    pack_int8,
    to_transformers,
    transformers_config,
    unpack_int8,
    whisper_dims,
)
from benchmarks.whisper_torch.ct2 import Ct2FormatError, dequantize, read_ct2

TYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<H", len(data) + 1) + data + b"\0"


def write_ct2(path, variables: dict, aliases: dict, spec: str = "WhisperSpec", version: int = 6) -> None:
    """model.bin as CTranslate2's _serialize writes it (variables sorted by name)."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, value in sorted(variables.items()):
        value = np.asarray(value)
        out += [_string(name), struct.pack("<B", value.ndim), *(struct.pack("<I", d) for d in value.shape)]
        if value.dtype == np.uint16:  # a bfloat16 bit pattern
            out.append(struct.pack("<B", 5))
        else:
            out.append(struct.pack("<B", TYPE_IDS[value.dtype]))
        out += [struct.pack("<I", value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def test_reader_reads_every_dtype_and_alias(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 4)).astype(np.float32)
    scale = (127 / np.abs(weight).max(axis=1)).astype(np.float32)
    bf16 = np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16
    variables = {
        "a/weight": np.rint(weight * scale[:, None]).astype(np.int8),
        "a/weight_scale": scale,
        "b/gamma": rng.standard_normal(4).astype(np.float16),
        "b/beta": rng.standard_normal(4).astype(np.float32),
        "num_heads": np.array(6, dtype=np.int16),
        "c": bf16.astype(np.uint16),
    }
    write_ct2(tmp_path / "model.bin", variables, {"d/weight": "a/weight"})
    model = read_ct2(tmp_path / "model.bin")
    assert (model.binary_version, model.spec, model.revision) == (6, "WhisperSpec", 3)
    assert model.aliases == {"d/weight": "a/weight"}
    assert np.array_equal(model.variables["a/weight"], variables["a/weight"])
    assert model.variables["b/gamma"].dtype == np.float16
    assert int(model.variables["num_heads"]) == 6
    assert np.array_equal(model.variables["c"], [1.5, -2.0])
    floats = dequantize(model.variables)
    assert "a/weight_scale" not in floats and floats["b/gamma"].dtype == np.float32
    assert np.abs(floats["a/weight"] - weight).max() <= np.abs(weight).max() / 254 + 1e-6


@pytest.mark.parametrize("damage", ["truncate", "version", "trailing"])
def test_reader_rejects_damaged_files(tmp_path, damage):
    write_ct2(tmp_path / "model.bin", {"x": np.ones(3, dtype=np.float32)}, {})
    data = (tmp_path / "model.bin").read_bytes()
    data = {"truncate": data[:-5], "version": struct.pack("<I", 99) + data[4:], "trailing": data + b"\0"}[
        damage
    ]
    (tmp_path / "model.bin").write_bytes(data)
    with pytest.raises(Ct2FormatError, match="model.bin"):
        read_ct2(tmp_path / "model.bin")


def to_ct2(state: dict[str, torch.Tensor], layers: int, heads: int) -> dict[str, np.ndarray]:
    """The test's own inverse of the mapping: a transformers Whisper state dict in WhisperSpec's layout."""
    s = {k: v.detach().numpy() for k, v in state.items()}
    out = {"encoder/num_heads": np.array(heads, np.int16), "decoder/num_heads": np.array(heads, np.int16)}

    def norm(dst, src):
        out[dst + "/gamma"], out[dst + "/beta"] = s[src + ".weight"], s[src + ".bias"]

    def linear(dst, src):
        out[dst + "/weight"], out[dst + "/bias"] = s[src + ".weight"], s[src + ".bias"]

    def fused(dst, src, letters):
        out[dst + "/weight"] = np.concatenate([s[f"{src}.{x}_proj.weight"] for x in letters])
        zeros = np.zeros(s[f"{src}.q_proj.bias"].shape, np.float32)
        out[dst + "/bias"] = np.concatenate([s.get(f"{src}.{x}_proj.bias", zeros) for x in letters])

    for side in ("encoder", "decoder"):
        out[f"{side}/position_encodings/encodings"] = s[f"model.{side}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(layers):
            src, dst = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            fused(f"{dst}/self_attention/linear_0", f"{src}.self_attn", "qkv")
            linear(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
            norm(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
            if side == "decoder":
                linear(f"{dst}/attention/linear_0", f"{src}.encoder_attn.q_proj")
                fused(f"{dst}/attention/linear_1", f"{src}.encoder_attn", "kv")
                linear(f"{dst}/attention/linear_2", f"{src}.encoder_attn.out_proj")
                norm(f"{dst}/attention/layer_norm", f"{src}.encoder_attn_layer_norm")
            linear(f"{dst}/ffn/linear_0", f"{src}.fc1")
            linear(f"{dst}/ffn/linear_1", f"{src}.fc2")
            norm(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    out["decoder/embeddings/weight"] = s["model.decoder.embed_tokens.weight"]
    return out


DIMS = WhisperDims(
    n_mels=8,
    d_model=16,
    encoder_layers=2,
    decoder_layers=2,
    encoder_heads=2,
    decoder_heads=2,
    ffn_dim=32,
    vocab_size=51864,
    max_source_positions=20,
    max_target_positions=12,
)


def _random_whisper(seed: int):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config, _ = transformers_config(DIMS, {})
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config)).eval()
    with torch.no_grad():
        for param in model.parameters():  # biases and norms too, so that a wrong mapping shows
            param.normal_(0, 0.2)
    return model, transformers


def _logits(model, features, tokens):
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


@pytest.mark.parametrize("quantize", [False, True])
def test_ct2_whisper_loads_into_transformers(tmp_path, quantize):
    """A random Whisper written as model.bin (fused projections, tied output, int8 rows when ``quantize``)
    comes back through read_ct2 -> dequantize -> to_transformers with the same logits."""
    original, transformers = _random_whisper(0)
    variables = to_ct2(original.state_dict(), DIMS.encoder_layers, DIMS.encoder_heads)
    if quantize:
        for name in [n for n, v in variables.items() if n.endswith("/weight") and v.ndim >= 2]:
            value = variables[name]
            rows = value.reshape(value.shape[0], -1)
            scale = (127 / np.abs(rows).max(axis=1)).astype(np.float32)
            variables[name] = np.rint(rows * scale[:, None]).astype(np.int8).reshape(value.shape)
            variables[name + "_scale"] = scale
    write_ct2(tmp_path / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    ct2 = read_ct2(tmp_path / "model.bin")
    assert whisper_dims(ct2.variables) == DIMS
    state = {
        k: torch.from_numpy(np.ascontiguousarray(v))
        for k, v in to_transformers(dequantize(ct2.variables)).items()
    }
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    config, _ = transformers_config(DIMS, {})
    restored = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config)).eval()
    missing, unexpected = restored.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    features = torch.randn(2, DIMS.n_mels, 2 * DIMS.max_source_positions)
    tokens = torch.tensor([[50257, 11, 12, 13], [50257, 7, 8, 9]])
    want, got = _logits(original, features, tokens), _logits(restored, features, tokens)
    if quantize:
        assert not torch.equal(want, got)
        assert torch.allclose(want, got, atol=0.1 * want.abs().max().item())
    else:
        assert torch.allclose(want, got, atol=1e-5)


def test_packed_int8_form_round_trips():
    original, _ = _random_whisper(1)
    state = {k: v.numpy() for k, v in original.state_dict().items() if k != "proj_out.weight"}
    restored = unpack_int8(pack_int8(state))
    assert restored.keys() == state.keys()
    for name, value in state.items():
        if value.ndim >= 2 and "embed_positions" not in name:
            rows = value.reshape(value.shape[0], -1)
            bound = np.abs(rows).max(axis=1) / 254 + 1e-6
            assert (np.abs(restored[name] - value).reshape(rows.shape) <= bound[:, None]).all(), name
        else:
            assert np.allclose(restored[name], value.astype(np.float16), atol=0), name


def test_a_key_projection_bias_is_refused():
    original, _ = _random_whisper(2)
    variables = dequantize(to_ct2(original.state_dict(), DIMS.encoder_layers, DIMS.encoder_heads))
    variables["encoder/layer_0/self_attention/linear_0/bias"][DIMS.d_model] = 1.0  # the k part
    with pytest.raises(ValueError, match="key projection"):
        to_transformers(variables)


def test_the_tokenizer_travels_xz_packed_and_loads_as_it_was(tmp_path):
    import lzma

    from benchmarks.whisper_torch.model import _tokenizer_file

    text = b'{"model": {"vocab": {"a": 0}}}'
    (tmp_path / "tokenizer.json.xz").write_bytes(lzma.compress(text))
    unpacked = _tokenizer_file(tmp_path)
    assert unpacked != tmp_path / "tokenizer.json" and unpacked.read_bytes() == text
    (tmp_path / "tokenizer.json").write_bytes(b"{}")
    assert _tokenizer_file(tmp_path) == tmp_path / "tokenizer.json"
