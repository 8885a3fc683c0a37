import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from tests.model_helpers import train_tiny_tokenizer

    return train_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
