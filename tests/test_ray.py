"""samba_cli.distributed and `samba cluster transcribe` on a real local Ray cluster (2 CPUs, loopback), with an
S3-compatible server (moto, threaded, loopback) for URL inputs and outputs. A tiny random model, generated clips."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from samba_cli.cli import app
from tests.test_batch import make_checkpoint

runner = CliRunner()
CLIPS = 7  # good clips in the input tree, beside one corrupt file
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 server on loopback (moto's threaded server), its URL in AWS_ENDPOINT_URL for this process."""
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="module")
def ray_cluster(s3_endpoint):
    """A local Ray cluster of 2 CPUs on loopback; its workers get the S3 endpoint and this checkout on their path."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [str(Path(root, "src")), root, os.environ.get("PYTHONPATH")]))
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {**s3_endpoint, "PYTHONPATH": path}},
        logging_level="WARNING",
        log_to_driver=False,  # as the command does unless -v
    )
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ray-model"))


def make_clips(folder: Path, count: int = CLIPS) -> list[Path]:
    """Short noise-and-tone clips of 1 to 2.5 s, some in a subfolder, and one corrupt ``broken.wav``."""
    rng = np.random.default_rng(1)
    paths = []
    for index in range(count):
        seconds = 1.0 + 0.25 * index
        t = np.arange(int(16000 * seconds)) / 16000
        clip = 0.2 * np.sin(2 * np.pi * (200 + 40 * index) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / ("talks" if index % 3 == 0 else "") / f"clip{index}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, clip.astype(np.float32), 16000)
        paths.append(path)
    (folder / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    return paths


def cluster(*args: object):
    return runner.invoke(
        app, ["cluster", "transcribe", "--no-vad", "--files-per-batch", "3", *map(str, args)]
    )


def local(*args: object):
    return runner.invoke(app, ["transcribe", "--no-vad", *map(str, args)])


def read_index(location: str):
    import pyarrow.parquet as pq

    if location.startswith("s3://"):
        import fsspec

        with fsspec.open(location, "rb") as stream:
            return pq.read_table(stream).to_pylist()
    return pq.read_table(location).to_pylist()


def texts(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*.txt"))}


def test_missing_extra_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    result = runner.invoke(app, ["cluster", "transcribe", "x"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: ray not installed: distributed transcription needs pip install 'samba-asr[ray]'"
    ]


def test_worker_columns_without_ray(model_dir, tmp_path):
    """The callable class on its own: paths and bytes in, one row per input, the bad one failed with its error."""
    pytest.importorskip("pyarrow")
    from samba_cli.distributed.worker import TranscribeBatch, WorkerSpec
    from samba_cli.options import TranscribeOptions

    clips = make_clips(tmp_path / "in", 2)
    worker = TranscribeBatch(WorkerSpec(str(model_dir), options=TranscribeOptions.from_kwargs(vad=False)))
    paths = [str(clips[0]), "memory-copy/clip1.wav", str(tmp_path / "in" / "broken.wav")]
    data = np.array([None, clips[1].read_bytes(), None], dtype=object)
    out = worker({"path": np.array(paths, dtype=object), "bytes": data})
    assert list(out["path"]) == paths
    assert list(out["status"]) == ["done", "done", "failed"]
    assert out["duration"].tolist() == pytest.approx([1.0, 1.25, 0.0])
    assert out["error"][2].startswith(f"{paths[2]}: ")
    segments = json.loads(out["segments"][0])
    assert " ".join(s["text"] for s in segments if s["text"]) == out["text"][0]
    assert all(json.loads(o) == [] for o in out["outputs"])  # no outputs column: nothing written


def test_folder_with_a_corrupt_file_then_resume(ray_cluster, model_dir, tmp_path):
    clips = make_clips(tmp_path / "in")
    result = cluster(tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", model_dir, "-f", "txt,json")
    assert result.exit_code == 1, result.output
    assert "broken.wav" in result.output
    rows = read_index(str(tmp_path / "out" / "index.parquet"))
    assert sorted(r["path"] for r in rows) == sorted(map(str, [*clips, tmp_path / "in" / "broken.wav"]))
    by_path = {r["path"]: r for r in rows}
    broken = by_path.pop(str(tmp_path / "in" / "broken.wav"))
    assert broken["status"] == "failed" and "broken.wav" in broken["error"]
    for clip in clips:
        row = by_path[str(clip)]
        name = clip.relative_to(tmp_path / "in").with_suffix("").as_posix()
        assert (row["status"], row["name"], row["language"]) == ("done", name, "en")
        assert row["duration"] == pytest.approx(sf.info(clip).duration)
        txt, js = tmp_path / "out" / f"{name}.txt", tmp_path / "out" / f"{name}.json"
        assert sorted(json.loads(row["outputs"])) == sorted([str(txt), str(js)])
        assert json.loads(js.read_text())["segments"] == json.loads(row["segments"])
        assert " ".join(txt.read_text().split()) == " ".join(row["text"].split())

    # the same transcripts as the local batch mode
    assert local(tmp_path / "in", "-r", "-o", tmp_path / "local", "-m", model_dir).exit_code == 1
    assert texts(tmp_path / "out") == texts(tmp_path / "local")

    # a second run skips what is done and tries the corrupt file again
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.txt")}
    result = cluster(tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", model_dir, "-f", "txt,json")
    assert result.exit_code == 1, result.output
    rows = read_index(str(tmp_path / "out" / "index.parquet"))
    assert sorted(r["status"] for r in rows) == ["failed"] + ["skipped"] * CLIPS
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # --overwrite transcribes everything again
    (tmp_path / "in" / "broken.wav").unlink()
    result = cluster(tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", model_dir, "--overwrite")
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in read_index(str(tmp_path / "out" / "index.parquet"))] == ["done"] * CLIPS


def test_a_killed_actor_loses_nothing(ray_cluster, model_dir, tmp_path):
    """The first actor call exits its process; Ray restarts the actor and retries the batch."""
    from rich.console import Console

    from samba_cli.distributed import storage
    from samba_cli.distributed.driver import run
    from samba_cli.distributed.worker import TranscribeBatch, WorkerSpec
    from samba_cli.options import ClusterOptions, TranscribeOptions
    from samba_cli.progress import QuietReporter

    marker = tmp_path / "crashed"

    class CrashOnce(TranscribeBatch):  # defined here, so Ray ships it by value
        def __call__(self, batch):
            if not marker.exists():
                marker.touch()
                os._exit(1)  # the actor's process dies mid-run, as on a lost node
            return super().__call__(batch)

    clips = make_clips(tmp_path / "in")
    (tmp_path / "in" / "broken.wav").unlink()
    target = storage.Target.of(str(tmp_path / "out"))
    work = storage.plan(
        storage.discover([str(tmp_path / "in")], True, frozenset({"wav"})), ["txt"], target, False
    )
    spec = WorkerSpec(str(model_dir), options=TranscribeOptions.from_kwargs(vad=False))
    index = target.child("index.parquet")
    summary = run(
        work, spec, ClusterOptions(files_per_batch=2), QuietReporter(Console()), index, target, CrashOnce
    )
    assert marker.exists()
    assert summary.count(storage.Status.DONE) == CLIPS and not summary.interrupted
    rows = read_index(index)
    assert sorted(r["path"] for r in rows) == sorted(map(str, clips))
    assert {r["status"] for r in rows} == {"done"}
    assert len(list((tmp_path / "out").rglob("*.txt"))) == CLIPS


def test_s3_inputs_and_outputs(ray_cluster, model_dir, tmp_path):
    import fsspec

    clips = make_clips(tmp_path / "in")
    s3 = fsspec.filesystem("s3")
    s3.mkdir("audio")
    s3.mkdir("text")
    s3.put(str(tmp_path / "in") + "/", "audio/podcasts/", recursive=True)
    result = cluster("s3://audio/podcasts", "-r", "-o", "s3://text/run1", "-m", model_dir, "-f", "txt,srt")
    assert result.exit_code == 1, result.output
    rows = read_index("s3://text/run1/index.parquet")
    names = sorted(c.relative_to(tmp_path / "in").with_suffix("").as_posix() for c in clips)
    assert sorted(r["name"] for r in rows if r["status"] == "done") == names
    assert [r["path"] for r in rows if r["status"] == "failed"] == ["s3://audio/podcasts/broken.wav"]
    s3.invalidate_cache()
    written = sorted(s3.find("text/run1"))
    assert written == sorted(
        ["text/run1/index.parquet"] + [f"text/run1/{n}.{f}" for n in names for f in ("txt", "srt")]
    )
    assert local(tmp_path / "in", "-r", "-o", tmp_path / "local", "-m", model_dir).exit_code == 1
    for name, text in texts(tmp_path / "local").items():
        assert s3.cat_file(f"text/run1/{name}").decode() == text

    result = cluster("s3://audio/podcasts", "-r", "-o", "s3://text/run1", "-m", model_dir, "-f", "txt,srt")
    assert result.exit_code == 1
    assert (
        sorted(r["status"] for r in read_index("s3://text/run1/index.parquet"))
        == ["failed"] + ["skipped"] * CLIPS
    )


def test_a_model_the_actors_cannot_load_is_one_line(ray_cluster, tmp_path):
    clips = make_clips(tmp_path / "in", 2)
    result = cluster(tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", tmp_path / "no-such-model")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith(
        f"error: the Ray job failed: {tmp_path / 'no-such-model'}: no such checkpoint"
    )
    rows = read_index(str(tmp_path / "out" / "index.parquet"))
    assert sorted(r["path"] for r in rows) == sorted(map(str, [*clips, tmp_path / "in" / "broken.wav"]))
    assert {r["status"] for r in rows} == {"failed"}


def test_quiet_prints_no_ray_core_worker_line(ray_cluster, model_dir, tmp_path, capfd):
    """-q prints samba's errors only: not the line Ray's core worker (C++, on fd 2) writes on every run about the
    actors' constructor arguments in the object store."""
    make_clips(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.wav").unlink()
    result = cluster(tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", model_dir, "-q")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    written = capfd.readouterr().err
    assert "core_worker.cc" not in written, written
    assert len(list((tmp_path / "out").rglob("*.txt"))) == 2


def test_a_ctrl_c_while_ray_shuts_down_still_writes_the_index(ray_cluster, model_dir, tmp_path, monkeypatch):
    from samba_cli.distributed import driver

    calls = []

    def shutdown():  # the test's cluster stays up; the first call is interrupted as by a Ctrl-C
        calls.append(len(calls))
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(driver, "connect", lambda cluster: True)
    monkeypatch.setattr(driver.ray, "shutdown", shutdown)
    clips = make_clips(tmp_path / "in", 2)
    result = cluster(tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", model_dir)
    assert result.exit_code == 130, result.output
    assert calls == [0, 1]
    rows = {r["path"]: r["status"] for r in read_index(str(tmp_path / "out" / "index.parquet"))}
    assert rows == {**{str(c): "done" for c in clips}, str(tmp_path / "in" / "broken.wav"): "failed"}
