"""Training on lhotse CutSets: format detection, the bucketing sampler's shares, Shar, exact resume, and two
torchrun processes (elastic c10d rendezvous, gloo) that see every cut once per epoch and survive a crash."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from lhotse import CutSet
from typer.testing import CliRunner

from samba_cli.commands.train import app
from samba_cli.model import PRESETS
from samba_cli.train.config import TrainConfig
from samba_cli.train.cuts import (
    DUPLICATE,
    CutBatchDataset,
    EpochBatches,
    SamplerOptions,
    is_cutset,
    open_cuts,
    read_cut_utterances,
)
from samba_cli.train.data import Augmentation
from samba_cli.train.loop import METRICS_FILE, train
from tests.model_helpers import TINY
from tests.train_helpers import SENTENCES, tiny_train_config, write_corpus, write_cuts

UTTERANCES = 24
OPTIONS = SamplerOptions(max_seconds=2.5, max_utterances=4, buckets=2, seed=0)


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    """(cuts.jsonl.gz, tokenizer trained on it through the CLI, JSONL manifest of the same audio)."""
    folder = tmp_path_factory.mktemp("cuts")
    manifest = write_corpus(folder, [SENTENCES[i % len(SENTENCES)] for i in range(UTTERANCES)])
    path = write_cuts(manifest, folder / "cuts.jsonl.gz")
    root = typer.Typer()
    root.add_typer(app, name="train")
    root.command("noop")(lambda: None)
    args = ["train", "tokenizer", str(path), "--out", str(folder / "tok.model"), "--vocab-size", "40"]
    result = CliRunner().invoke(root, args)
    assert result.exit_code == 0, result.output
    assert f"from {UTTERANCES} lines" in result.output
    return path, folder / "tok.model", manifest


@pytest.fixture(autouse=True)
def test_preset(monkeypatch):
    monkeypatch.setitem(PRESETS, "test", TINY)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def config_for(cuts, out_dir, **changes) -> TrainConfig:
    path, tokenizer, _ = cuts
    lhotse = {"max_batch_seconds": OPTIONS.max_seconds, "max_batch_utterances": OPTIONS.max_utterances}
    lhotse |= {"buckets": OPTIONS.buckets, "max_steps": 4}
    return tiny_train_config(path, tokenizer, out_dir, **{**lhotse, **changes})


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / METRICS_FILE).read_text().splitlines()]


def test_cutsets_are_told_apart_from_jsonl_manifests(cuts, tmp_path):
    path, _, manifest = cuts
    assert is_cutset(str(path)) and not is_cutset(str(manifest))
    plain = tmp_path / "cuts.jsonl"  # an uncompressed cut manifest is recognised by its first line
    CutSet.from_file(path).to_file(plain)
    assert is_cutset(str(plain)) and is_cutset("https://example.org/cuts.jsonl.gz")
    (tmp_path / "empty").mkdir()
    assert is_cutset(str(tmp_path / "empty"))  # a folder: Shar
    with pytest.raises(ValueError, match="not a lhotse Shar folder"):
        open_cuts(str(tmp_path / "empty"))


def test_ranks_share_out_every_cut_once_per_epoch(cuts):
    path = str(cuts[0])
    every = {cut.id for cut in open_cuts(path)}
    assert len(every) == UTTERANCES
    orders = []
    for epoch in (0, 1):
        shares = [
            [c.id for _, b in EpochBatches(open_cuts(path), OPTIONS, epoch, r, 2) for c in b] for r in (0, 1)
        ]
        counts = [len(list(EpochBatches(open_cuts(path), OPTIONS, epoch, r, 2))) for r in (0, 1)]
        assert counts[0] == counts[1] >= 3  # equal steps on every rank
        once = [cut for cut in shares[0] + shares[1] if not DUPLICATE.search(cut)]
        assert sorted(once) == sorted(every)
        orders.append(shares[0])
    assert orders[0] != orders[1]  # reshuffled each epoch
    whole = list(EpochBatches(open_cuts(path), OPTIONS, 0, 1, 2))
    rest = list(EpochBatches(open_cuts(path), OPTIONS, 0, 1, 2, start=2))
    assert [(seed, [c.id for c in b]) for seed, b in rest] == [
        (seed, [c.id for c in b]) for seed, b in whole[2:]
    ]


def test_shar_folder_gives_the_same_cuts_and_features(cuts, tmp_path):
    path, tokenizer, _ = cuts
    (tmp_path / "shar").mkdir()
    CutSet.from_file(path).to_shar(tmp_path / "shar", fields={"recording": "flac"}, shard_size=10)
    from_shar = list(open_cuts(str(tmp_path / "shar")))
    from_file = list(open_cuts(str(path)))
    assert [c.id for c in from_shar] == [c.id for c in from_file]
    dataset = CutBatchDataset(str(tokenizer), TINY.n_mels, 3, Augmentation(speeds=(0.9, 1.1)))
    a, b = dataset[(7, CutSet.from_cuts(from_shar[:3]))], dataset[(7, CutSet.from_cuts(from_file[:3]))]
    torch.testing.assert_close(a.features, b.features)
    assert a.ids == ["u0-0", "u1-1", "u2-2"] and torch.equal(a.tokens, b.tokens)
    run = train(config_for(cuts, tmp_path / "run", train_manifest=str(tmp_path / "shar"), max_steps=2))
    assert [r["step"] for r in records(run) if "loss" in r] == [1, 2]


def test_cutset_training_resumes_exactly_with_workers_and_validates(cuts, tmp_path):
    config = config_for(
        cuts,
        tmp_path / "full",
        workers=1,
        max_steps=5,
        accumulate=2,
        speeds=(0.9, 1.0, 1.1),
        freq_masks=1,
        freq_mask_width=4,
        noise_prob=0.5,
        dev_manifest=str(cuts[0]),
        val_every=4,
    )
    expected = records(train(config))
    assert any("val_wer_ctc" in r for r in expected)
    train(config.replace(out_dir=str(tmp_path / "cut")), on_step=lambda record: record["step"] == 3)
    resumed = records(train(config.replace(out_dir=str(tmp_path / "cut"))))
    assert [r.get("loss") for r in resumed] == [r.get("loss") for r in expected]
    assert [r.get("val_loss") for r in resumed] == [r.get("val_loss") for r in expected]
    assert len(read_cut_utterances(str(cuts[0]))) == UTTERANCES


def test_unreadable_cut_audio_is_one_line_naming_the_cut(cuts, tmp_path):
    entries = [cut.to_dict() for cut in CutSet.from_file(cuts[0]).subset(first=2)]
    entries[1]["recording"]["sources"][0]["source"] = str(tmp_path / "missing.flac")
    broken = CutSet.from_dicts(entries)
    broken.to_file(tmp_path / "broken.jsonl.gz")
    with pytest.raises(ValueError, match=r"^cut u1-1: cannot read audio: "):
        train(config_for(cuts, tmp_path / "run", train_manifest=str(tmp_path / "broken.jsonl.gz")))


# ----------------------------------------------------------------- two torchrun processes


def _torchrun(config_file: Path, log_dir: Path, kill_at: int = 0) -> dict[int, list[dict]]:
    """Train the config in ``config_file`` under torchrun (2 processes, elastic 1:2 nodes, c10d rendezvous);
    returns each rank's step log. With ``kill_at``, both processes die after that step and torchrun fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_dir.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1:2",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id={log_dir.name}",
        "--rdzv-conf=last_call_timeout=1",
        "--max-restarts=0",
        "--monitor-interval=0.5",
        str(Path(__file__).with_name("ddp_worker.py")),
        str(config_file),
        str(log_dir),
        str(kill_at),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    (log_dir / "torchrun.log").write_text(done.stdout + done.stderr)
    assert (done.returncode != 0) == bool(kill_at), done.stdout[-3000:] + done.stderr[-3000:]
    return {
        rank: [json.loads(line) for line in (log_dir / f"rank-{rank}.jsonl").read_text().splitlines()]
        for rank in (0, 1)
    }


@pytest.fixture(scope="module")
def ddp_runs(cuts, tmp_path_factory):
    """An uninterrupted two-process run into epoch 1, and the same run killed after step 3 (last checkpoint: step
    2, in the middle of epoch 0), then started again."""
    steps_per_epoch = len(list(EpochBatches(open_cuts(str(cuts[0])), OPTIONS, 0, 0, 2)))
    assert steps_per_epoch >= 4
    folder = tmp_path_factory.mktemp("ddp")
    config = config_for(
        cuts, folder / "whole", max_steps=steps_per_epoch + 1, save_every=2, speeds=(0.9, 1.0, 1.1)
    )
    config.save(folder / "whole.json")
    whole = _torchrun(folder / "whole.json", folder / "whole-log")
    crashed = config.replace(out_dir=str(folder / "crashed"))
    crashed.save(folder / "crashed.json")
    killed = _torchrun(folder / "crashed.json", folder / "killed-log", kill_at=3)
    resumed = _torchrun(folder / "crashed.json", folder / "resumed-log")
    return steps_per_epoch, config, whole, crashed, killed, resumed


def test_two_processes_see_every_cut_once_per_epoch(ddp_runs, cuts):
    steps_per_epoch, config, whole, *_ = ddp_runs
    seen = [
        cut for rank in (0, 1) for step in whole[rank] if step["epoch"] == 0 for b in step["ids"] for cut in b
    ]
    once = [cut for cut in seen if not DUPLICATE.search(cut)]
    assert sorted(once) == sorted(c.id for c in open_cuts(str(cuts[0])))
    for rank in (0, 1):
        assert [s["step"] for s in whole[rank]] == list(range(1, config.max_steps + 1))
        assert [s["epoch"] for s in whole[rank]] == [0] * steps_per_epoch + [1]
    trained = [r["utterances"] for r in records(config.out_dir) if "loss" in r and r["epoch"] == 0]
    assert sum(trained) == UTTERANCES  # repeated cuts, if any, are trained with weight 0 and not counted


def test_killed_then_resumed_run_continues_with_the_same_batches_and_losses(ddp_runs):
    _, config, whole, crashed, killed, resumed = ddp_runs
    for rank in (0, 1):
        assert [s["step"] for s in killed[rank]] == [1, 2, 3]
        assert resumed[rank][0]["step"] == 3  # from the step-2 checkpoint: step 3 again, mid-epoch
        assert [s["ids"] for s in resumed[rank]] == [s["ids"] for s in whole[rank][2:]]
    expected = [r["loss"] for r in records(config.out_dir) if "loss" in r]
    assert [r["loss"] for r in records(crashed.out_dir) if "loss" in r] == pytest.approx(expected, rel=1e-6)


def test_resume_with_another_number_of_processes_starts_the_next_epoch(cuts, tmp_path):
    config = config_for(cuts, tmp_path / "run", max_steps=3)
    train(config, on_step=lambda record: record["step"] == 2)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["position"]["epoch"] == 0 and state["position"]["batch"] == 2
    state["position"]["world_size"] = 2  # as if two processes had trained epoch 0 so far
    torch.save(state, tmp_path / "run" / "state.pt")
    train(config)
    assert [(r["step"], r["epoch"]) for r in records(tmp_path / "run")] == [(1, 0), (2, 0), (3, 1)]
