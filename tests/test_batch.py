"""samba_cli.planning and samba_cli.batch: discovery, output planning, the prefetch thread and a batch run with a tiny random model."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from samba_cli.batch import (
    BatchTranscriber,
    Prefetcher,
    Summary,
    _interrupts_deferred,
    probe_duration,
    run_batch,
)
from samba_cli.errors import DecodeError
from samba_cli.model import save_checkpoint
from samba_cli.planning import (
    DEFAULT_EXTENSIONS,
    Discovery,
    Existing,
    Job,
    Outcome,
    PlanError,
    Status,
    Task,
    discover,
    plan,
)
from tests.media_helpers import ESPEAK, run_ffmpeg, speak
from tests.model_helpers import tiny_model, train_tiny_tokenizer

requires_espeak = pytest.mark.skipif(ESPEAK is None, reason="needs espeak-ng")


def make_checkpoint(directory: Path, **overrides) -> Path:
    """A tiny random checkpoint folder (config.json, model.safetensors, tokenizer.model) for ``-m DIR``."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = directory / "tokenizer.model"
    train_tiny_tokenizer(directory)
    assert tokenizer.is_file()
    torch.manual_seed(0)
    return save_checkpoint(tiny_model(**overrides), directory, tokenizer_file=tokenizer)


def make_speech(path: Path, text: str = "Hello there, this is a short test of the command line.") -> Path:
    """espeak-ng speech converted by ffmpeg to whatever ``path``'s extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = speak(text, path.with_name(f"{path.stem}-raw.wav"))
    run_ffmpeg("-i", raw, path)
    raw.unlink()
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# -- discovery -----------------------------------------------------------------------------------------------------


def test_discover_files_folders_globs_and_stdin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(Path("one.mp3"))
    touch(Path("notes.md"))
    touch(Path("tree/a/talk.wav"))
    touch(Path("tree/b/talk.wav"))
    touch(Path("tree/top.flac"))
    touch(Path("tree/.hidden/x.wav"))
    touch(Path("tree/.x.wav"))
    touch(Path("tree/readme.txt"))

    found = discover(["one.mp3", "notes.md", "-"])
    assert [(j.source, j.name) for j in found.jobs] == [
        ("one.mp3", Path("one")),
        ("notes.md", Path("notes")),  # a named file is taken whatever its extension
        ("-", Path("stdin")),
    ]
    flat = discover(["tree"])
    assert [j.name for j in flat.jobs] == [Path("top")]
    deep = discover(["tree"], recursive=True)
    assert [j.name.as_posix() for j in deep.jobs] == ["top", "a/talk", "b/talk"]
    assert not deep.failures

    pattern = discover(["tree/*/talk.wav"])
    assert [j.name.as_posix() for j in pattern.jobs] == ["a/talk", "b/talk"]
    everywhere = discover(["tree/**/*"], extensions=frozenset({"wav"}))
    assert [j.name.as_posix() for j in everywhere.jobs] == ["a/talk", "b/talk"]


def test_discover_failures_and_duplicates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(Path("a.mp3"))
    Path("empty").mkdir()
    found = discover(["a.mp3", "./a.mp3", "*.mp3", "missing.wav", "empty", "*.ogg"])
    assert [j.source for j in found.jobs] == ["a.mp3"]
    messages = [f.message for f in found.failures]
    assert messages[0] == "missing.wav: no such file or folder"
    assert messages[1].startswith("empty: no media files in this folder (-r searches subfolders)")
    assert messages[2] == "*.ogg: no media files match"
    assert all(f.status is Status.FAILED for f in found.failures)
    assert "mp3" in DEFAULT_EXTENSIONS and "mp4" in DEFAULT_EXTENSIONS


# -- planning ------------------------------------------------------------------------------------------------------


def _discovery(*names: str) -> Discovery:
    return Discovery(tuple(Job(f"in/{n}.wav", Path(n)) for n in names), ())


def test_plan_outputs_and_collisions(tmp_path):
    work = plan(_discovery("a", "sub/b"), ("txt", "srt"), tmp_path)
    assert [[o.path for o in t.outputs] for t in work.tasks] == [
        [tmp_path / "a.txt", tmp_path / "a.srt"],
        [tmp_path / "sub/b.txt", tmp_path / "sub/b.srt"],
    ]
    clash = Discovery((Job("x/Talk.mp3", Path("Talk")), Job("x/talk.wav", Path("talk"))), ())
    with pytest.raises(PlanError, match="would both be written to"):
        plan(clash, ("txt",), tmp_path)


def test_plan_names_every_collision_at_once(tmp_path):
    jobs = [Job(f"x/{n}", Path(Path(n).stem.lower())) for n in ("a.mp3", "a.wav", "B.mp3", "b.wav", "b.ogg")]
    with pytest.raises(PlanError) as caught:
        plan(Discovery(tuple(jobs), ()), ("txt",), tmp_path)
    message = str(caught.value)
    assert "x/a.mp3 and x/a.wav would both be written to" in message
    assert "x/B.mp3, x/b.wav and x/b.ogg would all be written to" in message and "\n" not in message


def test_plan_suggests_ext_only_for_files_found_in_folders(tmp_path):
    named = Discovery(
        (Job("Talk.mp3", Path("Talk"), named=True), Job("talk.wav", Path("talk"), named=True)), ()
    )
    with pytest.raises(
        PlanError, match="rename them, or write them in separate runs with different -o"
    ) as caught:
        plan(named, ("txt",), tmp_path)
    assert "--ext" not in str(caught.value)
    found = Discovery((Job("x/Talk.mp3", Path("Talk")), Job("x/talk.wav", Path("talk"))), ())
    with pytest.raises(PlanError, match="choose one type with --ext"):
        plan(found, ("txt",), tmp_path)
    assert all(job.named for job in discover([str(touch(tmp_path / "a.wav")), "-"]).jobs)
    assert not any(job.named for job in discover([str(tmp_path)]).jobs)


def test_plan_checks_the_output_folder_before_any_work(tmp_path):
    afile = touch(tmp_path / "afile.txt")
    with pytest.raises(PlanError, match=f"-o {afile} is a file"):
        plan(_discovery("a"), ("txt",), afile)
    with pytest.raises(PlanError, match=f"{afile} is a file"):
        plan(_discovery("a"), ("txt",), afile / "sub")
    assert plan(_discovery("a"), ("txt",), tmp_path / "new" / "folder").tasks  # made when written
    assert not (tmp_path / "new").exists() and sorted(tmp_path.iterdir()) == [afile]
    assert not plan(Discovery((), ()), ("txt",), afile).tasks  # nothing to write, nothing to check


def test_plan_refuses_a_read_only_output_folder(tmp_path, monkeypatch):
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)  # a chmod means nothing to root
    with pytest.raises(
        PlanError, match=f"-o {tmp_path / 'sub'}: cannot write in {tmp_path}: Read-only file system"
    ):
        plan(_discovery("a"), ("txt",), tmp_path / "sub")


def test_plan_existing_outputs(tmp_path):
    touch(tmp_path / "a.txt")
    touch(tmp_path / "b.txt")
    touch(tmp_path / "b.srt")
    jobs = _discovery("a", "b", "c")

    refused = plan(jobs, ("txt", "srt"), tmp_path)
    assert [t.job.name for t in refused.tasks] == [Path("c")]
    assert [o.status for o in refused.settled] == [Status.FAILED, Status.FAILED]
    assert refused.settled[0].message == (
        f"in/a.wav: {tmp_path / 'a.txt'} exists; use --overwrite or --skip-existing"
    )
    assert "(and 1 more)" in refused.settled[1].message

    skipped = plan(jobs, ("txt", "srt"), tmp_path, Existing.SKIP)
    assert [(t.job.name, [o.format for o in t.outputs]) for t in skipped.tasks] == [
        (Path("a"), ["srt"]),  # only the missing format is written
        (Path("c"), ["txt", "srt"]),
    ]
    assert [o.status for o in skipped.settled] == [Status.SKIPPED]

    overwritten = plan(jobs, ("txt", "srt"), tmp_path, Existing.OVERWRITE)
    assert len(overwritten.tasks) == 3 and not overwritten.settled


def test_plan_stdout_rules():
    one = plan(_discovery("a"), ("srt",), None)
    assert one.tasks[0].outputs[0].path is None
    assert len(plan(_discovery("a", "b"), ("txt",), None).tasks) == 2
    assert len(plan(_discovery("a", "b"), ("jsonl",), None).tasks) == 2  # lines concatenate as well
    with pytest.raises(PlanError, match="one format"):
        plan(_discovery("a"), ("txt", "srt"), None)
    with pytest.raises(PlanError, match="works for txt and jsonl only"):
        plan(_discovery("a", "b"), ("srt",), None)


# -- prefetching ---------------------------------------------------------------------------------------------------


class FakeAudio:
    """``open_audio`` for the Prefetcher: ``blocks`` blocks of ``size`` samples per source, or an error."""

    def __init__(self, blocks: int, size: int) -> None:
        self.blocks = blocks
        self.size = size
        self.produced: list[tuple[str, int]] = []  # (source, block index) in production order
        self.closed: list[str] = []  # sources whose generator was closed before its end
        self.lock = threading.Lock()

    def __call__(self, source: str, block_seconds: float) -> Iterator[np.ndarray]:
        if source == "bad":
            raise DecodeError(source, "not a media file")
        return self._blocks(source)

    def _blocks(self, source: str) -> Iterator[np.ndarray]:
        try:
            for index in range(self.blocks):
                with self.lock:
                    self.produced.append((source, index))
                yield np.full(self.size, index, dtype=np.float32)
        except GeneratorExit:
            self.closed.append(source)
            raise


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_prefetcher_order_errors_and_bounded_memory():
    audio = FakeAudio(blocks=5, size=16000)
    with Prefetcher(["a", "bad", "b"], max_seconds=2.0, open_audio=audio) as prefetcher:
        # the producer stops once 2 s (two blocks) are queued, and never gets ahead by more
        _wait_until(lambda: len(audio.produced) >= 2)
        time.sleep(0.1)
        assert len(audio.produced) <= 3
        assert [b[0] for b in prefetcher.blocks(0)] == [0, 1, 2, 3, 4]
        with pytest.raises(DecodeError, match="bad: not a media file"):
            list(prefetcher.blocks(1))
        assert len(list(prefetcher.blocks(2))) == 5


def test_prefetcher_drops_abandoned_sources():
    audio = FakeAudio(blocks=50, size=16000)
    with Prefetcher(["a", "b", "c"], max_seconds=1.0, open_audio=audio) as prefetcher:
        first = prefetcher.blocks(0)
        next(first)
        first.close()  # the rest of "a" is not wanted: its decoding stops
        _wait_until(lambda: "a" in audio.closed)
        assert [b[0] for b in prefetcher.blocks(2)][:2] == [0, 1]  # "b" skipped entirely
        assert "b" in audio.closed or all(source != "b" for source, _ in audio.produced[:2])
        with pytest.raises(ValueError, match="already read or dropped"):
            prefetcher.blocks(1)


# -- small parts ---------------------------------------------------------------------------------------------------


def test_summary_counts():
    summary = Summary(
        (
            Outcome("a", Status.DONE, duration=30.0),
            Outcome("b", Status.FAILED, "b: broken"),
            Outcome("c", Status.SKIPPED),
            Outcome("d", Status.DONE, duration=10.0),
        ),
        wall_seconds=4.0,
    )
    assert [summary.count(s) for s in Status] == [2, 1, 1]
    assert summary.audio_seconds == 40.0
    assert summary.real_time_factor == 10.0


@pytest.fixture
def sigint_handler():
    """Restores SIGINT's handler after the test (pytest may run with SIGINT ignored, e.g. started with `&`)."""
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupts_deferred_until_the_block_ends(sigint_handler):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    steps = []
    with pytest.raises(KeyboardInterrupt), _interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        steps.append("finished")
    assert steps == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored_in_a_deferred_block(sigint_handler):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_probe_duration(tmp_path):
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.zeros(16000 * 2, dtype=np.float32), 16000)
    assert probe_duration(str(wav)) == pytest.approx(2.0)
    mp3 = tmp_path / "tone.mp3"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", mp3)
    assert probe_duration(str(mp3)) == pytest.approx(3.0, abs=0.1)
    assert probe_duration("-") is None
    assert probe_duration(str(tmp_path / "missing.wav")) is None


# -- a whole batch -------------------------------------------------------------------------------------------------


class RecordingReporter:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def begin(self, total: int) -> None:
        self.calls.append(("begin", total))

    def expect(self, seconds: float) -> None:
        pass

    def started(self, task: Task) -> None:
        self.calls.append(("started", task.job.source))

    def progress(self, seconds: float) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        self.calls.append(("finished", outcome.source, outcome.status))

    def end(self, summary: Summary) -> None:
        self.calls.append(("end", summary.count(Status.DONE)))


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> BatchTranscriber:
    from samba_cli.api import load_model
    from samba_cli.options import TranscribeOptions

    transcriber = load_model(make_checkpoint(tmp_path_factory.mktemp("ckpt")), device="cpu")
    return BatchTranscriber(transcriber, TranscribeOptions.from_kwargs(vad=False))


@requires_espeak
def test_run_batch_writes_good_files_and_reports_bad_ones(tmp_path, runner):
    good = make_speech(tmp_path / "in" / "good.wav")
    bad = tmp_path / "in" / "bad.mp3"
    bad.write_bytes(b"this is not an mp3 file at all" * 10)
    found = discover([str(tmp_path / "in")])
    assert [j.source for j in found.jobs] == [str(bad), str(good)]
    reporter = RecordingReporter()
    summary = run_batch(
        plan(found, ("txt", "json"), tmp_path / "out"), reporter, runner, estimate_duration=False
    )
    assert [o.status for o in summary.outcomes] == [Status.FAILED, Status.DONE]
    assert summary.outcomes[0].message.startswith(f"{bad}: ")
    assert summary.outcomes[1].duration == pytest.approx(sf.info(good).duration, abs=0.01)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json", "good.txt"]
    assert reporter.calls[0] == ("begin", 2) and reporter.calls[-1] == ("end", 1)

    stdout = io.BytesIO()
    summary = run_batch(plan(Discovery(found.jobs[1:], ()), ("txt",), None), reporter, runner, stdout)
    assert stdout.getvalue().decode() == (tmp_path / "out" / "good.txt").read_text()


@requires_espeak
def test_outputs_are_all_or_none(tmp_path, runner):
    good = make_speech(tmp_path / "good.wav")
    out = tmp_path / "out"
    (out / "good.srt").mkdir(parents=True)  # the srt cannot be written over a folder
    work = plan(discover([str(good)]), ("txt", "srt"), out, Existing.OVERWRITE)
    summary = run_batch(work, RecordingReporter(), runner, estimate_duration=False)
    outcome = summary.outcomes[0]
    assert outcome.status is Status.FAILED
    assert outcome.message.startswith(f"{good}: cannot write {out / 'good.srt'}: ")
    assert sorted(p.name for p in out.iterdir()) == ["good.srt"]  # the txt written before it was removed


@requires_espeak
def test_a_failed_overwrite_keeps_the_previous_transcripts(tmp_path, runner):
    """main wrote the new txt, failed on the srt (a folder), then removed the txt: the old one was lost."""
    good = make_speech(tmp_path / "good.wav")
    out = tmp_path / "out"
    (out / "good.srt").mkdir(parents=True)
    (out / "good.txt").write_text("OLD\n")
    work = plan(discover([str(good)]), ("txt", "srt"), out, Existing.OVERWRITE)
    summary = run_batch(work, RecordingReporter(), runner, estimate_duration=False)
    assert summary.outcomes[0].status is Status.FAILED
    assert summary.outcomes[0].message.startswith(f"{good}: cannot write {out / 'good.srt'}: ")
    assert (out / "good.txt").read_text() == "OLD\n"
    assert sorted(p.name for p in out.iterdir()) == ["good.srt", "good.txt"]


@requires_espeak
def test_outputs_another_run_wrote_meanwhile_are_left_alone(tmp_path, runner):
    """main checked for existing outputs when it planned and replaced whatever was there when it wrote: two runs
    on one folder both wrote, the second over the first's transcripts."""
    first, second = make_speech(tmp_path / "a.wav"), make_speech(tmp_path / "b.wav")
    out = tmp_path / "out"
    work = plan(discover([str(first), str(second)]), ("txt", "json"), out)
    out.mkdir()
    (out / "a.json").write_text("THE OTHER RUN'S\n")  # appears after the plan, before this run writes
    summary = run_batch(work, RecordingReporter(), runner, estimate_duration=False)
    assert [o.status for o in summary.outcomes] == [Status.FAILED, Status.DONE]
    message = summary.outcomes[0].message
    assert message.startswith(f"{first}: cannot write {out / 'a.json'}: ") and "--overwrite" in message
    assert (out / "a.json").read_text() == "THE OTHER RUN'S\n"
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json", "b.txt"]  # nothing half-written
    overwrite = plan(discover([str(first)]), ("txt", "json"), out, Existing.OVERWRITE)
    assert run_batch(overwrite, RecordingReporter(), runner, estimate_duration=False).outcomes[0].status is (
        Status.DONE
    )
    assert (out / "a.json").read_text() != "THE OTHER RUN'S\n"


class _ClosedPipe(io.BytesIO):
    def write(self, data):
        raise BrokenPipeError(32, "Broken pipe")


@requires_espeak
def test_a_closed_stdout_is_named_and_ends_the_batch(tmp_path, runner):
    """main exited 1 without a word when the reader of stdout went away (``samba ... -o - | head -1``)."""
    first = make_speech(tmp_path / "a.wav")
    for name in ("b.wav", "c.wav"):
        (tmp_path / name).write_bytes(first.read_bytes())
    work = plan(discover([str(tmp_path / n) for n in ("a.wav", "b.wav", "c.wav")]), ("txt",), None)
    reporter = RecordingReporter()
    summary = run_batch(work, reporter, runner, _ClosedPipe(), estimate_duration=False)
    assert summary.stdout_closed and not summary.interrupted
    (outcome,) = summary.outcomes
    assert outcome.status is Status.FAILED
    assert (
        outcome.message
        == f"{first}: cannot write to standard output: its reader closed it; 2 more inputs not transcribed"
    )
    assert ("finished", str(first), Status.FAILED) in reporter.calls


def test_run_batch_without_tasks_needs_no_model(tmp_path):
    work = plan(discover([str(tmp_path / "missing.wav")]), ("txt",), tmp_path)
    summary = run_batch(work, RecordingReporter(), None)
    assert [o.status for o in summary.outcomes] == [Status.FAILED]
