"""Checkpoints: a folder with config.json, model.safetensors and (optionally) tokenizer.model. No pickle."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from samba_cli.atomic import write_atomically
from samba_cli.errors import BackendError, CheckpointError
from samba_cli.model.config import FORMAT_VERSION, ModelConfig
from samba_cli.model.samba import SambaASR

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.model"
MODEL_TYPE = "samba-asr"


def save_checkpoint(
    model: SambaASR,
    directory: str | os.PathLike,
    tokenizer_file: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write config.json + model.safetensors (+ tokenizer.model) into ``directory``, each atomically.

    ``dtype`` stores the floating-point tensors in another precision (e.g. float16 to halve the size).
    ``metadata`` goes into config.json under "metadata" (training details for the model card).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    config = {
        "format_version": FORMAT_VERSION,
        "model_type": MODEL_TYPE,
        "model": model.config.to_dict(),
        "tokenizer": {"type": "sentencepiece", "file": TOKENIZER_FILE},
        "metadata": metadata or {},
    }
    write_atomically(
        directory / WEIGHTS_FILE,
        lambda stream: stream.write(save(tensors, metadata={"format": "pt"})),
        binary=True,
    )
    write_atomically(
        directory / CONFIG_FILE, lambda stream: stream.write(json.dumps(config, indent=2) + "\n")
    )
    if (
        tokenizer_file is not None
        and Path(tokenizer_file).resolve() != (directory / TOKENIZER_FILE).resolve()
    ):
        write_atomically(
            directory / TOKENIZER_FILE,
            lambda stream: stream.write(Path(tokenizer_file).read_bytes()),
            binary=True,
        )
    return directory


def read_config_file(directory: str | os.PathLike) -> dict:
    """The parsed config.json of a checkpoint folder, checked for type and format version."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: no {CONFIG_FILE}; a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("model_type") != MODEL_TYPE or "model" not in data:
        raise CheckpointError(f"{path}: not a samba-asr config (model_type must be {MODEL_TYPE!r})")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: missing format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is newer than this package supports ({FORMAT_VERSION}); "
            "upgrade samba-asr (pip install -U samba-asr)"
        )
    return data


def read_config(directory: str | os.PathLike) -> ModelConfig:
    data = read_config_file(directory)
    try:
        return ModelConfig.from_dict(data["model"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{Path(directory) / CONFIG_FILE}: invalid model config ({exc})") from exc


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no {WEIGHTS_FILE} (only safetensors weights are loaded)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: corrupt or truncated safetensors file ({exc}); delete it and download the model again"
        ) from exc


def check_state_dict(model: SambaASR, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise a CheckpointError naming every missing, unexpected or mis-shaped tensor, or the tensors holding
    NaN or infinite values (a damaged file that still parses)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
    for name in sorted(set(expected) & set(tensors)):
        if tuple(tensors[name].shape) != expected[name]:
            problems.append(f"{name} has shape {tuple(tensors[name].shape)}, config expects {expected[name]}")
    if problems:
        shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
        raise CheckpointError(f"{source}: weights do not match config.json: {shown}")
    broken = [
        name for name, tensor in tensors.items() if tensor.is_floating_point() and not tensor.isfinite().all()
    ]
    if broken:
        shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        raise CheckpointError(
            f"{source}: corrupt weights: {shown} hold NaN or infinite values; delete the model and download or "
            "export it again"
        )


def load_checkpoint(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
    int8: bool = False,
) -> SambaASR:
    """Build the model from config.json, load model.safetensors, move it, and select the SSD backend; with
    ``int8``, quantize its linear layers (:func:`quantize_linear_layers`, CPU, float32 only)."""
    directory = Path(directory)
    config = read_config(directory)
    tensors = _load_tensors(directory / WEIGHTS_FILE)
    # built on the CPU, not on the meta device: meta tensors run torch's Python decompositions, whose first use
    # imports torch._dynamo (about 2 s of a cold start); a CPU init of the weights costs well under 0.1 s
    model = SambaASR(config)
    check_state_dict(model, tensors, str(directory / WEIGHTS_FILE))
    model.load_state_dict(tensors, strict=True, assign=True)
    model = model.to(device=device, dtype=dtype).eval()
    model.set_backend(backend)
    return quantize_linear_layers(model) if int8 else model


def quantize_linear_layers(model: SambaASR) -> SambaASR:
    """The model with the attention decoder's ``nn.Linear`` layers (Mamba projections, cross-attention, MLPs)
    replaced, in place, by their int8 dynamic quantization: weights int8 per output channel, inputs quantized per
    call, int8 matrix products, float32 outputs. The decoder's beam search and rescoring are most of the CPU
    time of the default decoding; the encoder and CTC head stay float32, so CTC posteriors, segments and the
    CTC search are exactly those of float32 (quantizing them too cost 1 point more WER on real speech).
    Inference only, CPU float32 models only."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:  # torch has deprecated its eager quantization in favour of torchao
        raise BackendError(
            f"dtype int8 needs torch.ao.quantization, which torch {torch.__version__} lacks: use float32"
        ) from exc
    with warnings.catch_warnings():  # torch marks eager quantization deprecated in favour of torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(
            model.decoder, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )
    return model
