"""samba_cli.hub against a loopback fake Hub: downloads, cache, offline use, revisions, errors, push."""

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from samba_cli import hub
from samba_cli.errors import CheckpointError, HubError
from samba_cli.hub import (
    CorruptCheckpointError,
    DownloadError,
    HubAuthError,
    HubConnectionError,
    ModelNotCachedError,
    ModelNotFoundError,
    download_model,
    load_checkpoint_from,
    resolve_model,
    weights_summary,
)
from samba_cli.publish import export_checkpoint, push_checkpoint
from tests.fake_hub import FakeHub, checkpoint_files, checkpoint_folder, use_fake_hub
from tests.model_helpers import tiny_model, write_tiny_lm

REPO = "org/tiny"


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as server:
        use_fake_hub(monkeypatch, server.url, tmp_path / "hf")
        yield server


def test_download_then_cache_hit_with_the_hub_stopped(fake_hub, tmp_path):
    lm = write_tiny_lm(tmp_path / "lm.arpa.gz")  # the optional files are downloaded too
    sha = fake_hub.commit(
        REPO,
        {
            **checkpoint_files(tmp_path),
            "lm.arpa.gz": lm,
            "lexicon.txt.gz": gzip.compress(b"# a notice\nthe\ncat\n"),
            "extra.bin": b"not downloaded",
        },
    )
    model, resolved = load_checkpoint_from(REPO)
    assert resolved.source == "hub" and resolved.model_id == REPO and resolved.revision == sha
    assert sorted(p.name for p in resolved.path.iterdir()) == sorted(hub.HUB_FILES)
    assert resolved.path.is_relative_to(Path(constants.HF_HUB_CACHE))
    assert model.config == tiny_model().config
    fake_hub.stop()
    assert resolve_model(REPO) == resolved


def test_offline_uses_the_cache_and_explains_what_is_missing(fake_hub, tmp_path, monkeypatch):
    fake_hub.commit(REPO, checkpoint_files(tmp_path))
    resolved = resolve_model(REPO)
    assert resolve_model(REPO, local_files_only=True) == resolved
    with pytest.raises(
        ModelNotCachedError, match=r"org/other: not in the model cache .*samba models download org/other"
    ):
        resolve_model("org/other", local_files_only=True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model(REPO) == resolved
    with pytest.raises(ModelNotCachedError, match=r"HF_HUB_OFFLINE is set\); unset HF_HUB_OFFLINE") as caught:
        resolve_model("org/other")
    assert "samba models download" not in str(caught.value)  # main sent the user in a circle
    with pytest.raises(HubError, match="--force .*needs the network"):
        download_model(REPO, force=True)
    assert not any("org/other" in r.path for r in fake_hub.requests)


def test_revisions_are_pinned(fake_hub, tmp_path):
    first = fake_hub.commit(REPO, checkpoint_files(tmp_path, d_state=8))
    fake_hub.commit(REPO, checkpoint_files(tmp_path, d_state=16), branch="v2")
    second = fake_hub.commit(REPO, checkpoint_files(tmp_path, d_state=16))

    def d_state(model):
        return json.loads((model.path / "config.json").read_text())["model"]["d_state"]

    assert d_state(resolve_model(REPO)) == 16 and resolve_model(REPO).revision == second
    pinned = resolve_model(REPO, revision=first)
    assert (pinned.revision, d_state(pinned)) == (first, 8)
    assert d_state(resolve_model(REPO, revision="v2")) == 16
    fake_hub.stop()
    assert resolve_model(REPO, revision=first, local_files_only=True) == pinned


def test_unknown_repo_and_revision(fake_hub, tmp_path):
    fake_hub.commit(REPO, checkpoint_files(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"^org/missing: no such model repo on http://127\.0\.0\.1"):
        resolve_model("org/missing")
    with pytest.raises(ModelNotFoundError, match="org/tiny@nope: .* has no revision 'nope'"):
        resolve_model(REPO, revision="nope")


def test_private_repo_needs_a_token(fake_hub, tmp_path, monkeypatch):
    fake_hub.add_repo("org/private", private=True)
    fake_hub.commit("org/private", checkpoint_files(tmp_path))
    with pytest.raises(
        HubAuthError, match=r"org/private: .*private.*--token, set HF_TOKEN, or run `hf auth login`"
    ):
        resolve_model("org/private")
    with pytest.raises(HubAuthError, match="HTTP 401"):
        resolve_model("org/private", token="hf_wrong")
    assert resolve_model("org/private", token=fake_hub.token, cache_dir=tmp_path / "other").source == "hub"
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    assert resolve_model("org/private").revision is not None


def test_gated_repo_says_how_to_get_access(fake_hub, tmp_path):
    fake_hub.add_repo("org/gated", gated=True)
    fake_hub.commit("org/gated", checkpoint_files(tmp_path))
    with pytest.raises(HubAuthError, match="gated repo .*accept its conditions"):
        resolve_model("org/gated")


def test_unreachable_hub_is_named(fake_hub):
    url = fake_hub.url
    fake_hub.stop()
    with pytest.raises(HubConnectionError, match=rf"org/tiny: cannot reach {url} \(ConnectError"):
        resolve_model(REPO)


def test_truncated_file_on_the_hub_is_caught(fake_hub, tmp_path):
    files = checkpoint_files(tmp_path)
    fake_hub.commit(REPO, {**files, "model.safetensors": files["model.safetensors"][:-100]})
    with pytest.raises(
        CorruptCheckpointError,
        match=r"org/tiny@\w{8}: model\.safetensors is corrupt or truncated .*"
        r"`samba models download org/tiny --force`.*`samba models rm org/tiny`",
    ):
        resolve_model(REPO)


def test_corrupt_cached_file_is_fixed_by_force(fake_hub, tmp_path):
    fake_hub.commit(REPO, checkpoint_files(tmp_path))
    weights = resolve_model(REPO).path / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(1000)
    with pytest.raises(CorruptCheckpointError, match="--force"):
        resolve_model(REPO)
    download_model(REPO, force=True)
    assert resolve_model(REPO).path == weights.parent


def test_interrupted_download_resumes_with_a_range_request(fake_hub, tmp_path):
    # http_get writes 10 MB chunks: cut a 12 MB file after 11 MB so one chunk is on disk and the retry resumes.
    folder = checkpoint_folder(tmp_path / "big")
    save_file({"w": torch.zeros(3_000_000)}, str(folder / "model.safetensors"))
    big = (folder / "model.safetensors").read_bytes()
    fake_hub.commit(REPO, {p.name: p.read_bytes() for p in folder.iterdir()})
    fake_hub.interrupt("model.safetensors", after_bytes=11_000_000)
    resolved = resolve_model(REPO)
    assert (resolved.path / "model.safetensors").read_bytes() == big
    ranges = [
        r.range for r in fake_hub.requests if r.method == "GET" and r.path.endswith("model.safetensors")
    ]
    assert ranges == [None, f"bytes={10 * 1024 * 1024}-"]


def test_failed_download_keeps_finished_files(fake_hub, tmp_path):
    fake_hub.commit(REPO, checkpoint_files(tmp_path))
    fake_hub.fail("model.safetensors", 500)
    with pytest.raises(DownloadError, match="org/tiny: .* answered HTTP 500; try again later"):
        resolve_model(REPO)
    assert resolve_model(REPO).source == "hub"
    assert fake_hub.count("GET", "/config.json") == 1
    assert fake_hub.count("GET", "/model.safetensors") == 2


def test_newer_format_and_non_checkpoint_repos(fake_hub, tmp_path):
    files = checkpoint_files(tmp_path)
    config = json.loads(files["config.json"])
    fake_hub.commit(
        "org/future", {**files, "config.json": json.dumps({**config, "format_version": 99}).encode()}
    )
    with pytest.raises(CheckpointError, match=r"^org/future@\w{8}: .*newer than this package"):
        resolve_model("org/future")
    fake_hub.commit("org/readme-only", {"README.md": b"# nothing here\n"})
    with pytest.raises(CheckpointError, match="no config.json, model.safetensors, tokenizer.model"):
        resolve_model("org/readme-only")


def test_local_folders_and_bad_names(tmp_path):
    folder = checkpoint_folder(tmp_path / "ckpt")
    resolved = resolve_model(folder)
    assert (resolved.source, resolved.path, resolved.revision) == ("local", folder, None)
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_model(folder / "config.json")
    run = tmp_path / "runs" / "r2"  # a `samba train run` folder: its weights are in checkpoint/
    checkpoint_folder(run / "checkpoint")
    with pytest.raises(
        CheckpointError, match=f"a training run folder: its weights are in {run / 'checkpoint'}"
    ):
        resolve_model(run)
    with pytest.raises(CheckpointError, match="no such checkpoint folder, and not a Hub repo id"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(HubError, match="--revision applies to Hub repos only"):
        resolve_model(folder, revision="main")
    (folder / "tokenizer.model").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer.model"):
        resolve_model(folder)


def test_a_typo_of_the_bundled_name_suggests_it_without_asking_the_hub(monkeypatch):
    """main took -m samba-tiny for a Hub repo and said it could not reach huggingface.co."""

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    for typo in ("samba-tiny", "samba-tiny-em", "Samba-Tiny-EN"):
        with pytest.raises(hub.ModelNotFoundError, match=f"{typo}: .*did you mean the bundled samba-tiny-en"):
            resolve_model(typo)


def test_bundled_model_is_the_default(tmp_path, monkeypatch):
    folder = checkpoint_folder(tmp_path / "bundled")
    monkeypatch.setattr(hub, "BUNDLED_MODELS", {"samba-tiny-en": folder})
    assert resolve_model() == hub.ResolvedModel(
        path=folder, model_id="samba-tiny-en", revision=None, source="bundled"
    )
    monkeypatch.setattr(hub, "BUNDLED_MODELS", {"samba-tiny-en": tmp_path / "absent"})
    with pytest.raises(
        CheckpointError, match="samba-tiny-en: the bundled model is not installed .*reinstall"
    ):
        resolve_model()


def test_weights_summary_counts_parameters_from_the_header(tmp_path):
    model = tiny_model()
    folder = checkpoint_folder(tmp_path / "ckpt")
    summary = weights_summary(folder / "model.safetensors")
    assert summary.n_parameters == sum(t.numel() for t in model.state_dict().values())
    assert summary.n_tensors == len(model.state_dict()) and summary.dtypes == ("F32",)
    for data in (b"", b"\xff" * 8 + b"{}", (8).to_bytes(8, "little") + b"not json"):
        (folder / "model.safetensors").write_bytes(data)
        with pytest.raises(ValueError):
            weights_summary(folder / "model.safetensors")


def test_push_then_download(fake_hub, tmp_path):
    source = resolve_model(checkpoint_folder(tmp_path / "ckpt", metadata={"metrics": {"wer": 0.12}}))
    out = export_checkpoint(source, tmp_path / "export", name="org/pushed")
    with pytest.raises(HubAuthError, match="org/pushed: .*HTTP 401.*write access"):
        push_checkpoint(out, "org/pushed")
    url = push_checkpoint(out, "org/pushed", private=True, token=fake_hub.token)
    assert url.startswith(f"{fake_hub.url}/org/pushed/commit/")
    assert fake_hub.repos["org/pushed"].private
    pulled = resolve_model("org/pushed", token=fake_hub.token)
    assert sorted(p.name for p in pulled.path.iterdir()) == sorted(p.name for p in out.iterdir())
    for path in out.iterdir():
        assert (pulled.path / path.name).read_bytes() == path.read_bytes()
    (out / "README.md").write_text((out / "README.md").read_text() + "\nBranch v2.\n")
    push_checkpoint(out, "org/pushed", revision="v2", token=fake_hub.token)
    assert b"Branch v2." in fake_hub.files("org/pushed", "v2")["README.md"]
    assert b"Branch v2." not in fake_hub.files("org/pushed", "main")["README.md"]


def test_environment_variables_configure_the_hub(tmp_path, monkeypatch):
    """HF_ENDPOINT, HF_HOME, HF_TOKEN and HF_HUB_OFFLINE are read by huggingface_hub at import: use fresh processes."""
    home = tmp_path / "home"
    online_script = "from samba_cli.hub import resolve_model; print(resolve_model('org/private').path)"
    offline_script = (
        "from samba_cli.hub import resolve_model, ModelNotCachedError\n"
        "print(resolve_model('org/public').path)\n"
        "try:\n    resolve_model('org/absent')\nexcept ModelNotCachedError as e:\n    print(e)\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env = {**clean, "HF_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    with FakeHub() as server:
        server.add_repo("org/private", private=True)
        server.commit("org/private", checkpoint_files(tmp_path))
        server.commit("org/public", checkpoint_files(tmp_path))
        use_fake_hub(monkeypatch, server.url, home)
        cached = resolve_model("org/public").path
        seen_before = len(server.requests)
        online_env = {**env, "HF_ENDPOINT": server.url, "HF_TOKEN": server.token}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for code, e in (
                (online_script, online_env),
                (offline_script, {**env, "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "1"}),
            )
        ]
        (online, online_err), (offline, offline_err) = (p.communicate(timeout=60) for p in procs)
    assert procs[0].returncode == 0, online_err
    assert Path(online.strip()).is_relative_to(home / "hub")
    assert procs[1].returncode == 0, offline_err
    lines = offline.splitlines()
    assert lines[0] == str(cached)
    assert lines[1].startswith("org/absent: not in the model cache") and "HF_HUB_OFFLINE is set" in lines[1]
    assert not [r for r in server.requests[seen_before:] if "org/public" in r.path or "org/absent" in r.path]
