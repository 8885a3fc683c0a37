import json
import os

import pytest
import torch

from samba_cli.errors import CheckpointError
from samba_cli.model import load_checkpoint, save_checkpoint
from tests.model_helpers import TINY, tiny_model


def _outputs(model):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(1, TINY.n_mels, 50, generator=g)
    tokens = torch.randint(0, TINY.vocab_size, (1, 7), generator=g)
    out = model(feats, torch.tensor([50]), tokens)
    return out.logits, out.ctc_logits


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_gives_identical_outputs(tmp_path, tie):
    model = tiny_model(tie_embeddings=tie)
    save_checkpoint(model, tmp_path / "ckpt", metadata={"note": "test"})
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == model.config
    for a, b in zip(_outputs(model), _outputs(loaded), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert json.loads((tmp_path / "ckpt/config.json").read_text())["metadata"] == {"note": "test"}


def test_mismatched_checkpoint_names_the_tensors(tmp_path):
    save_checkpoint(tiny_model(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["d_state"] = 16
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"in_proj\.weight has shape"):
        load_checkpoint(tmp_path)


def test_truncated_weights_give_clear_error(tmp_path):
    save_checkpoint(tiny_model(), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated.*download"):
        load_checkpoint(tmp_path)


def test_weights_overwritten_with_ff_bytes_are_refused_by_name(tmp_path):
    """0xFF bytes in a float32 tensor are NaNs: the file still parses, the model would transcribe nothing."""
    save_checkpoint(tiny_model(), tmp_path)
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    half = len(data) // 2
    data[half : half + 2000] = b"\xff" * 2000
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{tmp_path}.*corrupt weights: .* NaN or infinite"):
        load_checkpoint(tmp_path)


def test_an_unknown_config_field_names_the_model_folder(tmp_path):
    save_checkpoint(tiny_model(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["bogus_field"] = 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=f"^{tmp_path}/config.json: .*unknown model fields .'bogus_field'."
    ):
        load_checkpoint(tmp_path)


def test_newer_format_version_is_refused(tmp_path):
    save_checkpoint(tiny_model(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="newer than this package"):
        load_checkpoint(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)


def test_half_precision_storage_loads_as_float32(tmp_path):
    model = tiny_model()
    save_checkpoint(model, tmp_path, dtype=torch.float16)
    loaded = load_checkpoint(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32
    a, _ = _outputs(model)
    b, _ = _outputs(loaded)
    assert (a - b).abs().max() < 1e-2 * a.abs().max()


def test_saved_files_follow_the_umask_and_leave_no_temporaries(tmp_path, tiny_tokenizer):
    import os

    previous = os.umask(0o022)
    try:
        save_checkpoint(tiny_model(), tmp_path, tokenizer_file=tiny_tokenizer.path)
    finally:
        os.umask(previous)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.model"]
    for name in names:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_loading_does_not_import_torch_dynamo(tmp_path):
    """Cold-start cost: building the model on the meta device ran torch's Python decompositions, which import
    torch._dynamo (about 2 s of every `samba transcribe`)."""
    import subprocess
    import sys

    save_checkpoint(tiny_model(), tmp_path)
    code = (
        "import sys; from samba_cli.model import load_checkpoint; "
        f"load_checkpoint({str(tmp_path)!r}); print('torch._dynamo' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_checkpoint_files_are_written_atomically_with_the_umask_mode(tmp_path):
    """save_checkpoint writes through samba_cli.atomic: no temporary file is left and every file gets the mode the
    umask gives new files (safetensors alone would leave the weights private)."""
    tokenizer = tmp_path / "tok.model"
    tokenizer.write_bytes(b"not a real sentencepiece model")
    folder = save_checkpoint(tiny_model(), tmp_path / "ckpt", tokenizer_file=tokenizer)
    mask = os.umask(0)
    os.umask(mask)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.model"]
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in folder.iterdir())
    assert (folder / "tokenizer.model").read_bytes() == tokenizer.read_bytes()
