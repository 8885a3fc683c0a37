import pytest
import torch


def pytest_collection_modifyitems(config, items):
    from tests.fused_shims import INTERPRETER_ON

    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_fused = pytest.mark.skip(reason="the fused tier runs with TRITON_INTERPRET=1 (tools/fused-tier.sh)")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "fused" in item.keywords and not INTERPRETER_ON:
            item.add_marker(skip_fused)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory):
    """Parsed language models and lexicons go to a folder of the test session, not the user's cache (CLI tests
    in subprocesses inherit the variable)."""
    import os

    before = os.environ.get("SAMBA_CACHE_DIR")
    os.environ["SAMBA_CACHE_DIR"] = str(tmp_path_factory.mktemp("samba-cache"))
    yield
    if before is None:
        os.environ.pop("SAMBA_CACHE_DIR", None)
    else:
        os.environ["SAMBA_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from tests.model_helpers import train_tiny_tokenizer

    return train_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
