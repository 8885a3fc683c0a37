"""`samba` and `samba transcribe`: CliRunner for options, files and exit codes; real processes for a stdin pipe
and Ctrl-C. A tiny random model writes gibberish: these tests check structure, files, formats and exit codes."""

from __future__ import annotations

import contextlib
import gzip
import inspect
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import srt
import webvtt
from typer.testing import CliRunner

from samba_cli import cli, hub
from samba_cli.cli import app
from samba_cli.commands.transcribe import transcribe_command
from samba_cli.cues import CueOptions
from tests.media_helpers import ESPEAK, run_ffmpeg
from tests.model_helpers import write_tiny_lm
from tests.test_batch import make_checkpoint, make_speech

pytestmark = pytest.mark.skipif(ESPEAK is None, reason="needs espeak-ng")

runner = CliRunner()
SAMBA = [sys.executable, "-c", "from samba_cli.cli import main; main()"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return make_speech(tmp_path_factory.mktemp("media") / "speech.wav")


def transcribe(model: Path | None, *args: object, vad: bool = False, env: dict[str, str] | None = None):
    model_args = [] if model is None else ["-m", str(model)]
    vad_args = [] if vad else ["--no-vad"]
    return runner.invoke(app, ["transcribe", *model_args, *vad_args, *map(str, args)], env=env)


def test_version_and_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("samba ") and result.stdout.split()[1][0].isdigit()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "transcribe" in result.stdout and "--install-completion" in result.stdout
    assert runner.invoke(app, ["transcribe", "--help"]).exit_code == 0
    assert runner.invoke(app, ["nonsense"]).exit_code == 2


def test_shell_completion():
    def complete(words: str) -> list[str]:
        env = {
            "_SAMBA_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        return runner.invoke(app, [], env=env, prog_name="samba").stdout.split()

    assert "transcribe" in complete("samba tr")
    assert complete("samba transcribe -f txt,s") == ["txt,srt"]
    assert complete("samba transcribe --skip-ex") == ["--skip-existing"]


def test_missing_subcommand_modules_are_left_out(monkeypatch):
    monkeypatch.setitem(
        cli.COMMANDS, "someday", cli.LazyCommand("samba_cli.commands.no_such_module", "app", "Not yet.")
    )
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "someday" not in result.stdout
    assert runner.invoke(app, ["someday"]).exit_code == 2


def test_every_format(model, speech, tmp_path):
    result = transcribe(model, speech, "-f", "all", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"speech.{e}" for e in ("json", "jsonl", "srt", "tsv", "txt", "vtt")
    ]
    document = json.loads((tmp_path / "speech.json").read_text())
    assert document["segments"], "the random model should decode something"
    assert document["duration"] > 3 and document["source"] == str(speech)
    assert document["options"]["window"]["vad"] is False
    assert document["options"]["encoder_batch_seconds"] == 0.0, "auto means one window at a time on cpu"
    cues = list(srt.parse((tmp_path / "speech.srt").read_text()))
    assert cues and all(cue.content for cue in cues)
    assert len(webvtt.read(str(tmp_path / "speech.vtt")).captions) == len(cues)
    assert (tmp_path / "speech.tsv").read_text().startswith("start\tend\ttext\n")
    assert (tmp_path / "speech.txt").read_text().strip()
    assert "1 done, 0 skipped, 0 failed" in result.stderr


def test_folders_are_mirrored(model, speech, tmp_path):
    for folder in ("in/day1", "in/day2", "in/day2/extra"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "talk.wav").write_bytes(speech.read_bytes())
    (tmp_path / "in/notes.txt").write_text("not media")
    result = transcribe(model, tmp_path / "in", "-r", "-o", tmp_path / "out", "-f", "srt", vad=True)
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*"))
    assert written == ["day1/talk.srt", "day2/extra/talk.srt", "day2/talk.srt"]
    assert result.stderr.count("] ") == 3  # a plain line per file: stderr is not a terminal here
    assert "3 done" in result.stderr
    texts = {(tmp_path / "out" / name).read_text() for name in written}
    assert len(texts) == 1, "the same audio gives the same subtitles, whichever files share its batches"

    # all three files in one encoder batch and one decoder batch: still the same subtitles
    shared = [
        "-r",
        "-o",
        tmp_path / "shared",
        "-f",
        "srt",
        "--encoder-batch-seconds",
        "600",
        "--batch-size",
        "64",
    ]
    assert transcribe(model, tmp_path / "in", *shared, vad=True).exit_code == 0
    assert {(tmp_path / "shared" / name).read_text() for name in written} == texts

    result = transcribe(model, tmp_path / "in", "-o", tmp_path / "flat")  # without -r: top level only
    assert result.exit_code == 1 and "no media files in this folder (-r searches subfolders)" in result.stderr


def test_refuse_skip_overwrite(model, speech, tmp_path):
    out = tmp_path / "out"
    assert transcribe(model, speech, "-o", out).exit_code == 0
    (out / "speech.txt").write_text("keep me")

    refused = transcribe(model, speech, "-o", out, "-f", "txt,vtt")
    assert refused.exit_code == 1
    assert f"{out / 'speech.txt'} exists; use --overwrite or --skip-existing" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["speech.txt"]

    skipped = transcribe(model, speech, "-o", out, "--skip-existing")
    assert skipped.exit_code == 0 and "0 done, 1 skipped, 0 failed" in skipped.stderr
    env = {"SAMBA_MODEL": str(model)}  # SAMBA_MODEL chooses the model like -m
    resumed = transcribe(None, speech, "-o", out, "-f", "txt", "-f", "vtt", "--skip-existing", env=env)
    assert resumed.exit_code == 0 and "bundled" not in resumed.stderr
    assert (out / "speech.txt").read_text() == "keep me" and (out / "speech.vtt").is_file()

    assert transcribe(model, speech, "-o", out, "--overwrite").exit_code == 0
    assert (out / "speech.txt").read_text() != "keep me"


def test_good_and_bad_inputs(model, speech, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio" * 100)
    result = transcribe(model, speech, bad, tmp_path / "missing.wav", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["speech.txt"]
    assert result.stdout == ""
    failures = [line for line in result.stderr.splitlines() if " error: " in line]
    assert len(failures) == 2
    assert any(f"error: {bad}: " in line and "not a media file" in line for line in failures)
    assert any("missing.wav: no such file or folder" in line for line in failures)
    assert "Traceback" not in result.stderr
    assert "1 done, 0 skipped, 2 failed" in result.stderr


def test_stdout_output(model, speech, tmp_path):
    alone = transcribe(model, speech, "-o", "-", "-q")
    assert alone.exit_code == 0 and alone.stderr == ""
    assert alone.stdout.strip()
    copy = tmp_path / "copy.wav"
    copy.write_bytes(speech.read_bytes())
    both = transcribe(model, speech, copy, "-o", "-", "-q")
    assert both.exit_code == 0
    assert both.stdout == alone.stdout * 2  # txt transcripts are concatenated


@pytest.mark.parametrize(
    "args",
    [
        ["-f", "docx"],
        ["-f", "txt,srt", "-o", "-"],
        ["--beam-size", "0"],
        ["--decoder", "rnnt"],
        ["--window-seconds", "0"],
        ["--window-length", "0"],
        ["--device", "tpu"],
        ["--max-line-width", "0"],
        ["--no-such-option"],
    ],
)
def test_usage_errors(model, speech, args):
    result = transcribe(model, speech, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--lm-weight", "nan"],
        ["--lm-weight", "inf"],
        ["--lm-weight", "-5"],
        ["--word-bonus", "nan"],
        ["--oov-penalty", "-inf"],
        ["--lexicon-penalty", "nan"],
        ["--window-length", "inf"],
        ["--max-cue-duration", "nan"],
        ["--encoder-batch", "inf"],
        ["--encoder-batch-seconds", "nan"],
    ],
)
def test_float_options_take_finite_numbers_only(model, speech, args):
    """main accepted `--lm-weight nan` and friends and wrote garbage text with exit 0."""
    result = transcribe(model, speech, *args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[0]}'" in result.stderr and "Traceback" not in result.output


def test_a_named_pipe_is_transcribed_whole_with_the_time_estimate_on(model, speech, tmp_path):
    """main's background duration probe (for the ETA) read the FIFO first: `not a media file`, or audio lost."""
    fifo = tmp_path / "w.fifo"
    os.mkfifo(fifo)
    expected = transcribe(model, speech, "-o", "-")
    assert expected.exit_code == 0, expected.output
    process = subprocess.Popen(
        [*SAMBA, "transcribe", fifo, "-m", model, "--no-vad", "-o", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with fifo.open("wb") as pipe:  # opens once samba opens it for reading
        pipe.write(speech.read_bytes())
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode() == expected.stdout
    assert b"1 done" in stderr


def test_usage_errors_about_inputs(model, speech, tmp_path):
    assert runner.invoke(app, ["transcribe"]).exit_code == 2  # no INPUT
    copy = tmp_path / "copy.wav"
    copy.write_bytes(speech.read_bytes())
    several = transcribe(model, speech, copy, "-f", "srt", "-o", "-")
    assert several.exit_code == 2 and "works for txt and jsonl only" in several.stderr
    (tmp_path / "speech.mp3").write_bytes(b"x")
    (tmp_path / "speech.wav").write_bytes(speech.read_bytes())
    clash = transcribe(model, tmp_path / "speech.wav", tmp_path / "speech.mp3", "-o", tmp_path / "out")
    assert clash.exit_code == 2 and "would both be written to" in clash.stderr
    assert "--ext" not in clash.stderr  # --ext does not apply to files named explicitly
    assert not (tmp_path / "out").exists()  # refused before any work


def test_an_output_path_that_is_a_file_is_refused_before_decoding(model, speech, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    afile = tmp_path / "afile.txt"
    afile.write_text("keep me\n")
    result = transcribe(model, speech, "-o", "afile.txt")
    assert result.exit_code == 2, result.output  # main decoded first, then failed with "File exists", exit 1
    assert "-o afile.txt is a file" in result.stderr and "Traceback" not in result.stderr
    assert afile.read_text() == "keep me\n"


def test_model_errors_are_one_line(speech, tmp_path):
    not_a_folder = tmp_path / "model.bin"
    not_a_folder.write_bytes(b"x")
    result = runner.invoke(app, ["transcribe", str(speech), "-m", str(not_a_folder), "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {not_a_folder}: is a file")
    assert "Traceback" not in result.stderr


def test_bundled_model_is_announced(model, speech, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "BUNDLED_MODELS", {hub.DEFAULT_MODEL: model})
    monkeypatch.delenv("SAMBA_MODEL", raising=False)
    result = runner.invoke(app, ["transcribe", str(speech), "--no-vad", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"using the bundled model {hub.DEFAULT_MODEL}") == 1
    quiet = runner.invoke(
        app, ["transcribe", str(speech), "--no-vad", "-o", str(tmp_path), "--overwrite", "-q"]
    )
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_cli_defaults_match_the_library():
    from samba_cli.options import TranscribeOptions

    library = TranscribeOptions()
    cli = {p.name: p.default for p in inspect.signature(transcribe_command).parameters.values()}
    assert cli["beam_size"] == library.decode.beam_size
    assert cli["batch_size"] == library.decode.batch_size
    assert cli["decoder"].value == library.decode.decoder
    assert cli["vad"] == library.window.vad
    assert cli["window_seconds"] == library.window.window_seconds
    assert cli["encoder_batch_seconds"] == library.encoder_batch_seconds
    assert cli["word_timestamps"] == library.word_timestamps
    cues = CueOptions()
    assert (cli["max_line_width"], cli["max_line_count"], cli["max_cue_duration"]) == (
        cues.max_line_width,
        cues.max_line_count,
        cues.max_duration,
    )


def test_reporters():
    from rich.console import Console

    from samba_cli.batch import Summary
    from samba_cli.planning import Job, Outcome, Status, Task
    from samba_cli.progress import LogReporter, RichReporter, format_duration

    assert format_duration(3723.4) == "1:02:03"
    outcomes = (
        Outcome("a.mp3", Status.DONE, duration=90.0),
        Outcome("b.mp3", Status.FAILED, "b.mp3: broken"),
    )
    summary = Summary(outcomes, wall_seconds=3.0)
    expected = {LogReporter: "[1/2] a.mp3: 0:01:30 of audio", RichReporter: "2/2 files"}
    for reporter_class, terminal in ((LogReporter, False), (RichReporter, True)):
        stream = io.StringIO()
        reporter = reporter_class(Console(file=stream, force_terminal=terminal, width=120))
        reporter.begin(2)
        reporter.expect(120.0)
        reporter.started(Task(Job("a.mp3", Path("a")), ()))
        reporter.progress(45.0)
        for outcome in outcomes:
            reporter.finished(outcome)
        reporter.end(summary)
        text = stream.getvalue()
        assert expected[reporter_class] in text
        assert "error: b.mp3: broken" in text
        assert text.rstrip().endswith(
            "1 done, 0 skipped, 1 failed: 0:01:30 of audio in 0:00:03 (30.0x real time)"
        )


# -- real processes ------------------------------------------------------------------------------------------------


def test_stdin_pipe_to_srt_on_stdout(model, speech, tmp_path):
    mp3 = tmp_path / "speech.mp3"
    run_ffmpeg("-i", speech, mp3)
    with mp3.open("rb") as stdin:
        result = subprocess.run(
            [*SAMBA, "transcribe", "-", "-f", "srt", "-o", "-", "-m", str(model), "--no-vad"],
            stdin=stdin,
            capture_output=True,
            cwd=tmp_path,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode("utf-8")
    cues = list(srt.parse(text))
    assert cues, "the random model should decode something"
    assert srt.compose(cues) == text  # stdout is the SRT document and nothing else
    assert b"1 done" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.mp3"]  # -o - writes no file


def _start_after_first_file(command: list[object], first_output: Path, **popen) -> subprocess.Popen:
    """Start ``samba`` and return once ``first_output`` is written (the next input is then in progress)."""
    # a harness that runs pytest in the background ignores SIGINT, and children inherit that: restore it
    process = subprocess.Popen(
        [*SAMBA, *map(str, command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )
    deadline = time.monotonic() + 60
    while not first_output.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the first file was never written: {process.communicate()[1].decode()}")
        time.sleep(0.02)
    return process


def _interrupt(process: subprocess.Popen) -> tuple[bytes, bytes]:
    assert process.poll() is None, "the second input finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def test_ctrl_c_keeps_finished_files_and_leaves_no_partial_output(model, speech, tmp_path):
    long = tmp_path / "long.flac"
    run_ffmpeg("-stream_loop", "479", "-i", speech, "-ac", "1", "-ar", "16000", long)  # about 25 minutes
    out = tmp_path / "out"
    command = [
        "transcribe",
        speech,
        long,
        "-m",
        model,
        "-o",
        out,
        "-f",
        "txt,json",
        "--no-vad",
        "--threads",
        "1",
    ]
    process = _start_after_first_file(command, out / "speech.json")
    stdout, stderr = _interrupt(process)
    assert process.returncode == 130, stderr.decode()
    assert stdout == b""
    assert sorted(p.name for p in out.iterdir()) == ["speech.json", "speech.txt"]  # no long.*, no .tmp
    assert b"interrupted: 1 done" in stderr
    assert b"Traceback" not in stderr

    resumed = transcribe(model, speech, "-o", out, "-f", "txt,json", "--skip-existing")
    assert resumed.exit_code == 0 and "1 skipped" in resumed.stderr


def test_ctrl_c_while_waiting_for_stdin(model, speech, tmp_path):
    out = tmp_path / "out"
    command = ["transcribe", speech, "-", "-m", model, "-o", out, "--no-vad"]
    process = _start_after_first_file(command, out / "speech.txt", stdin=subprocess.PIPE)
    process.stdin.write(
        speech.read_bytes()[: len(speech.read_bytes()) // 2]
    )  # half a file, the pipe stays open
    process.stdin.flush()
    time.sleep(0.2)
    _, stderr = _interrupt(process)
    assert process.returncode == 130, stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["speech.txt"]


def test_a_models_language_model_is_used_by_ctc_decoding(model, speech, tmp_path):
    folder = tmp_path / "with-lm"
    shutil.copytree(model, folder)
    write_tiny_lm(folder / "lm.arpa.gz")
    result = transcribe(folder, speech, "--decoder", "ctc", "-f", "json", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "using the model's language model lm.arpa.gz" in result.stderr
    decode = json.loads((tmp_path / "speech.json").read_text())["options"]["decode"]
    assert decode["lm"] == str(folder / "lm.arpa.gz")
    result = transcribe(
        folder, speech, "--decoder", "ctc", "--lm", "none", "-f", "json", "-o", tmp_path, "--overwrite"
    )
    assert result.exit_code == 0 and "language model" not in result.stderr
    assert json.loads((tmp_path / "speech.json").read_text())["options"]["decode"]["lm"] is None
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an arpa file\n")
    result = transcribe(folder, speech, "--decoder", "ctc", "--lm", bad, "-o", tmp_path / "none")
    assert result.exit_code == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: {bad}: not an ARPA language model: no \\data\\ section"
    )
    result = transcribe(folder, speech, "--decoder", "attention", "--lm", bad, "-o", tmp_path / "none")
    assert result.exit_code == 2 and "CTC decoding only" in result.stderr
    assert not (tmp_path / "none").exists()


def test_ctc_decoding_of_a_model_without_a_ctc_head_names_the_decoder_option(speech, tmp_path):
    folder = make_checkpoint(tmp_path / "no-ctc", ctc_head=False)
    result = transcribe(folder, speech, "--decoder", "ctc", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "'--decoder': decoder 'ctc' needs a model with a CTC head" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_models_lexicon_comes_with_its_language_model(model, speech, tmp_path):
    folder = tmp_path / "with-lexicon"
    shutil.copytree(model, folder)
    write_tiny_lm(folder / "lm.arpa.gz")
    (folder / "lexicon.txt.gz").write_bytes(gzip.compress(b"# notice\nhello\nworld\n"))
    args = (
        "--decoder",
        "ctc",
        "--rescore-weight",
        "0.5",
        "--attention-beam",
        "2",
        "--search-workers",
        "2",
        "-f",
        "json",
        "-o",
        tmp_path,
    )
    result = transcribe(folder, speech, *args)
    assert result.exit_code == 0, result.output
    assert "using the model's language model lm.arpa.gz and lexicon lexicon.txt.gz" in result.stderr
    decode = json.loads((tmp_path / "speech.json").read_text())["options"]["decode"]
    assert (decode["lexicon"], decode["rescore_weight"]) == (str(folder / "lexicon.txt.gz"), 0.5)
    assert decode["attention_beam"] == 2
    assert decode["search_workers"] == 2
    result = transcribe(
        folder, speech, "--decoder", "ctc", "--lm", "none", "--lexicon", folder / "lexicon.txt.gz"
    )
    assert (
        result.exit_code == 2 and "'--lexicon': a lexicon is used with a language model only" in result.stderr
    )
    result = transcribe(
        folder, speech, "--decoder", "ctc", "--lexicon", tmp_path / "nope.txt", "-o", tmp_path / "x"
    )
    assert result.exit_code == 1 and result.stderr.strip().endswith("nope.txt: lexicon not found")
    assert not (tmp_path / "x").exists()


def test_time_left_follows_the_audio_left_at_the_average_speed():
    """On 22 files with 20 minutes of audio main showed 0:00:03 left at file 7, and sat at 0:00:01 while a
    10-minute file was decoding: rich's estimate took a burst of short files for the speed, and froze."""
    from rich.console import Console

    from samba_cli.batch import Summary
    from samba_cli.planning import Job, Outcome, Status, Task
    from samba_cli.progress import RichReporter, _RemainingColumn, remaining_seconds

    now = [0.0]
    reporter = RichReporter(
        Console(file=io.StringIO(), force_terminal=True, width=120), get_time=lambda: now[0]
    )
    reporter.begin(22)
    reporter.expect(1200.0)
    for k in range(7):  # seven short files, 60 s of audio, done in a burst at 20 s
        now[0] = 20.0
        reporter.started(Task(Job(f"{k}.mp3", Path(str(k))), ()))
        reporter.finished(Outcome(f"{k}.mp3", Status.DONE, duration=60.0 / 7))
    task = reporter.bar.tasks[0]
    assert str(_RemainingColumn().render(task)) == "0:06:20 left"  # 1140 s of audio left at 3 s per second
    now[0] = 120.0  # then a long file gives no progress for 100 s: the estimate grows, it does not freeze
    assert str(_RemainingColumn().render(task)) == "0:38:00 left"
    reporter.end(Summary((), 120.0))
    assert remaining_seconds(None, 10.0, 5.0) is None and remaining_seconds(100.0, 0.0, 5.0) is None
    assert remaining_seconds(100.0, 150.0, 5.0) == 0.0


@pytest.mark.parametrize("command", [["transcribe"], ["eval"], ["models", "info"]])
def test_help_at_80_columns_shows_every_option_name_in_full(command):
    """main's rich help table cut names at 80 columns: --word-timestam…, --lexicon-penal…, --local-files-o…"""
    import click
    import typer

    result = runner.invoke(app, [*command, "-h"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    group = typer.main.get_command(app)
    ctx = click.Context(group)
    cmd = group.get_command(ctx, command[0])
    for name in command[1:]:
        cmd = cmd.get_command(ctx, name)
    shown = [p for p in cmd.params if not getattr(p, "hidden", False)]
    names = [o for p in shown for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
    assert names and all(name in result.stdout for name in names), [
        n for n in names if n not in result.stdout
    ]
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_root_help_lists_every_command_without_importing_torch():
    script = (
        "import sys\nfrom samba_cli.cli import main\nsys.argv = ['samba', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch imported:', 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "torch imported: False" in done.stdout, done.stdout + done.stderr
    for name in cli.COMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_summary_is_the_first_line_of_its_help(name):
    spec = cli.COMMANDS[name]
    command = cli._load(name, spec)
    assert command is not None
    lines = [line.replace("\b", "").strip() for line in inspect.cleandoc(command.help or "").splitlines()]
    first_line = next(line for line in lines if line)
    assert spec.summary == first_line


def _children(pid: int) -> list[str]:
    """Command lines of the child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                found.append(Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_kill_9_leaves_no_python_internals_on_stderr(model, speech, tmp_path):
    """main: after kill -9 with search workers running, multiprocessing's resource tracker printed
    `There appear to be 5 leaked semaphore objects` on the stderr samba shares with it."""
    folder = tmp_path / "with-lm"
    shutil.copytree(model, folder)
    write_tiny_lm(folder / "lm.arpa.gz")
    long = tmp_path / "long.flac"
    run_ffmpeg("-stream_loop", "99", "-i", speech, "-ac", "1", "-ar", "16000", long)
    command = [
        *SAMBA,
        "transcribe",
        long,
        "-m",
        folder,
        "--no-vad",
        "--decoder",
        "ctc",
        "-o",
        tmp_path / "out",
    ]
    process = subprocess.Popen(
        [*command, "--search-workers", "2", "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not any("spawn_main" in line for line in _children(process.pid)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no search worker started: {process.communicate()[1].decode()}")
        time.sleep(0.05)
    time.sleep(0.5)
    process.kill()
    _, stderr = process.communicate(
        timeout=60
    )  # to the end: the tracker holds stderr until it has cleaned up
    assert b"leaked" not in stderr and b"resource_tracker" not in stderr, stderr.decode()


def test_the_old_spellings_of_window_options_still_work_unlisted(speech, model, tmp_path):
    """--window-length and --encoder-batch became --window-seconds and --encoder-batch-seconds (the library's
    names); scripts that use the old spellings get the same options, and --help lists only the new ones."""
    runs = {}
    for name, args in {
        "new": ["--window-seconds", "3", "--encoder-batch-seconds", "30"],
        "old": ["--window-length", "3", "--encoder-batch", "30"],
    }.items():
        out = tmp_path / name
        result = runner.invoke(
            app, ["transcribe", str(speech), "-m", str(model), "-f", "json", "-o", str(out), *args]
        )
        assert result.exit_code == 0, result.output
        runs[name] = json.loads(next(out.glob("*.json")).read_text())["options"]
    assert runs["new"] == runs["old"]
    assert (runs["new"]["window"]["window_seconds"], runs["new"]["encoder_batch_seconds"]) == (3.0, 30.0)
    help_text = runner.invoke(app, ["transcribe", "--help"], env={"COLUMNS": "200"}).output
    assert "--window-seconds" in help_text and "--encoder-batch-seconds" in help_text
    assert "--window-length" not in help_text and "--encoder-batch " not in help_text
