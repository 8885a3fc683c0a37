"""One device resolver (samba_cli.device) for transcription, evaluation, benchmarks and training."""

import pytest
import torch
from typer.testing import CliRunner

from samba_cli.cli import app
from samba_cli.device import resolve_device
from samba_cli.errors import BackendError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cuda:-1", "CPU", ""])
def test_unknown_names_are_refused(name):
    with pytest.raises(BackendError, match="choose auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"], ids=["gpu", "gpu0", "gpu1"])
def test_cuda_without_cuda_is_one_clear_error(name):
    with pytest.raises(BackendError, match="CUDA is not available"):
        resolve_device(name, local_rank=1)


@pytest.mark.cuda
def test_cuda_is_the_local_ranks_gpu_under_torchrun():
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:0", local_rank=5) == torch.device("cuda", 0)
    with pytest.raises(BackendError, match="CUDA devices"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"], ids=["gpu", "gpu1"])
def test_transcribe_refuses_a_missing_gpu_as_a_usage_error(device, tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    result = CliRunner().invoke(
        app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path), "--device", device]
    )
    assert result.exit_code == 2, result.output
    assert (
        result.stderr.strip()
        == f"error: device {device!r} requested but CUDA is not available; use --device cpu"
    )
