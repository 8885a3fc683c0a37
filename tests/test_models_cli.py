"""`samba models` through typer's CliRunner, against the loopback fake Hub."""

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from samba_cli import hub
from samba_cli.commands.models import app
from tests.fake_hub import FakeHub, checkpoint_files, checkpoint_folder, use_fake_hub
from tests.model_helpers import write_tiny_lm

runner = CliRunner()


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as server:
        use_fake_hub(monkeypatch, server.url, tmp_path / "hf")
        monkeypatch.setattr(hub, "BUNDLED_MODELS", {"samba-tiny-en": checkpoint_folder(tmp_path / "bundled")})
        yield server


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def fails_with(result, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_download_list_info_rm(fake_hub, tmp_path):
    first = fake_hub.commit("org/tiny", checkpoint_files(tmp_path, d_state=8))
    second = fake_hub.commit("org/tiny", checkpoint_files(tmp_path))
    fake_hub.commit("org/not-samba", {"config.json": b'{"model_type": "bert"}', "README.md": b"# bert\n"})
    for args in (["org/tiny"], ["org/tiny", "--revision", first], ["org/not-samba"]):
        invoke("download", *args)
    result = invoke("download", "org/tiny")
    assert result.exit_code == 0, result.output
    assert f"Downloaded org/tiny (revision {second})" in result.stdout

    listed = invoke("list")
    assert listed.exit_code == 0, listed.output
    assert "samba-tiny-en" in listed.stdout and "bundled" in listed.stdout
    assert first[:8] in listed.stdout and second[:8] in listed.stdout and "main" in listed.stdout
    assert "org/not-samba" not in listed.stdout

    shown = invoke("info", "org/tiny", "--offline")
    assert shown.exit_code == 0, shown.output
    n_params = hub.weights_summary(hub.resolve_model("org/tiny").path / "model.safetensors").n_parameters
    assert (
        f"{n_params:,}" in shown.stdout and "d_state" in shown.stdout and "# tiny test model" in shown.stdout
    )

    removed = invoke("rm", "org/tiny", "--revision", first[:8])
    assert removed.exit_code == 0, removed.output
    assert f"Removed org/tiny ({first[:8]})" in removed.stdout
    assert first[:8] not in invoke("list").stdout
    assert invoke("rm", "org/tiny").exit_code == 0
    assert "org/tiny" not in invoke("list").stdout
    fails_with(invoke("rm", "org/tiny"), r"org/tiny: not in the model cache .*samba models list")


def test_errors_are_one_line_on_stderr(fake_hub, tmp_path):
    fails_with(invoke("download", "org/missing"), r"org/missing: no such model repo on http://127\.0\.0\.1")
    fails_with(invoke("info", "org/missing", "--offline"), r"org/missing: not in the model cache .*download")
    fails_with(invoke("download", "not a repo"), "not a Hub repo id")
    fake_hub.add_repo("org/private", private=True)
    fake_hub.commit("org/private", checkpoint_files(tmp_path))
    fails_with(invoke("download", "org/private"), "--token, set HF_TOKEN, or run `hf auth login`")
    assert invoke("download", "org/private", "--token", fake_hub.token).exit_code == 0


def test_info_of_the_bundled_model_and_a_folder(fake_hub, tmp_path):
    result = invoke("info")
    assert result.exit_code == 2  # MODEL is required on the command line
    result = invoke("info", "samba-tiny-en")
    assert result.exit_code == 0, result.output
    assert "bundled" in result.stdout
    folder = checkpoint_folder(tmp_path / "ckpt")
    (folder / "README.md").unlink()
    result = invoke("info", folder)
    assert result.exit_code == 0, result.output
    assert "(no model card)" in result.stdout


def test_info_is_a_summary_and_json_has_everything(tmp_path):
    """main printed 613 lines for the bundled model: every training note and the whole model card."""
    folder = checkpoint_folder(
        tmp_path / "ckpt", metadata={"name": "t", "training": {"stages": list(range(50))}}
    )
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# tiny card\n" + "line\n" * 200)
    summary = invoke("info", folder)
    assert summary.exit_code == 0, summary.output
    assert len(summary.stdout.splitlines()) < 40
    assert "# tiny card (204 lines" in summary.stdout and "metadata.training" in summary.stdout
    assert "line\nline" not in summary.stdout and "49" not in summary.stdout
    full = invoke("info", folder, "--json")
    assert full.exit_code == 0, full.output
    document = json.loads(full.stdout)
    assert document["config"]["metadata"]["training"]["stages"] == list(range(50))
    assert document["card"].count("line\n") == 200 and document["source"] == "local"
    bundled = invoke("info", "samba-tiny-en")
    assert bundled.exit_code == 0 and len(bundled.stdout.splitlines()) < 40


def test_export_push_download(fake_hub, tmp_path):
    metadata = {"metrics": {"wer": 0.125}, "dataset": "synthetic-en", "steps": 1000}
    folder = checkpoint_folder(tmp_path / "ckpt", metadata=metadata)
    write_tiny_lm(folder / "lm.arpa.gz")  # optional files are exported along
    (folder / "lexicon.txt.gz").write_bytes(gzip.compress(b"the\ncat\n"))
    out = tmp_path / "export"
    result = invoke("export", folder, out, "--name", "org/samba-test", "--license", "mit")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(hub.HUB_FILES)
    card = (out / "README.md").read_text()
    assert "- `lm.arpa.gz`" in card and "- `lexicon.txt.gz`" in card
    front = card.split("---\n")[1]
    for line in (
        "library_name: samba-asr",
        "license: mit",
        "language: en",
        "- automatic-speech-recognition",
        "- mamba",
    ):
        assert line in front.splitlines()
    assert "# org/samba-test" in card and "samba transcribe audio.wav --model org/samba-test" in card
    assert "| wer | 0.125 |" in card and "| dataset | synthetic-en |" in card and "| d_state | 8 |" in card
    fails_with(invoke("export", folder, out), "not an empty folder; pass --force")
    assert invoke("export", folder, out, "--force").exit_code == 0
    afile = out.parent / "afile"
    afile.write_text("kept\n")
    fails_with(invoke("export", folder, afile, "--force"), f"{afile}: is a file, not a folder")
    assert afile.read_text() == "kept\n"

    fails_with(invoke("push", out, "org/samba-test"), r"org/samba-test: .*HTTP 401.*write access")
    fails_with(invoke("push", folder / "config.json", "org/samba-test"), "no config.json")
    pushed = invoke("push", out, "org/samba-test", "--token", fake_hub.token, "--branch", "dev")
    assert pushed.exit_code == 0, pushed.output
    assert f"{fake_hub.url}/org/samba-test/commit/" in pushed.stdout
    downloaded = invoke("download", "org/samba-test", "--revision", "dev")
    assert downloaded.exit_code == 0, downloaded.output
    pulled = hub.resolve_model("org/samba-test", revision="dev")
    assert json.loads((pulled.path / "config.json").read_text())["metadata"] == metadata
    assert (pulled.path / "README.md").read_text() == (out / "README.md").read_text()
