"""Live transcription: segments and cues written as the audio arrives, equal to the whole-file writers' output for
the same segments; live windowing; Ctrl-C. A tiny random model writes gibberish: structure, timing and files."""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt
from typer.testing import CliRunner

from samba_cli.cli import app
from samba_cli.cues import CueOptions
from samba_cli.options import TranscribeOptions
from samba_cli.results import Segment, TranscriptionInfo, Word
from samba_cli.transcript import CutJoiner
from samba_cli.windows import Gap, Window, iter_windows
from samba_cli.writers import LIVE_FORMATS, LiveWriter, get_writer
from tests.media_helpers import ESPEAK, speech_16k
from tests.test_batch import make_checkpoint

runner = CliRunner()
SAMBA = [sys.executable, "-c", "from samba_cli.cli import main; main()"]
needs_speech = pytest.mark.skipif(ESPEAK is None, reason="needs espeak-ng")


# -- the writers: live pieces == the whole file --------------------------------------------------------------------


def _segments(rng: random.Random, count: int) -> list[Segment]:
    """Segments in source order with word times; some close together (cues that meet), some short."""
    out, t = [], rng.uniform(0.0, 1.0)
    for index in range(count):
        words = []
        for _ in range(rng.randint(1, 14)):
            start = t + rng.choice([0.0, 0.05, 0.2, 1.0])
            end = start + rng.uniform(0.05, 0.6)
            text = rng.choice(
                ["hello", "world,", "and", "the", "Mamba.", "streams", "a", "&", "x-->y", "tail?"]
            )
            words.append(Word(text, round(start, 3), round(end, 3), 0.9))
            t = end
        text = " ".join(w.text for w in words)
        out.append(Segment(index, words[0].start, words[-1].end, text, tuple(words), -0.5, 0.1))
        t += rng.choice([0.01, 0.3, 0.9, 3.0])
    return out


@pytest.mark.parametrize("seed", range(12))
def test_live_writers_give_the_whole_files_text(seed):
    """Whatever the updates (segments in groups, each with how far the stream was read), the pieces of every
    live format joined are the whole-file writer's text for the same segments and duration."""
    rng = random.Random(seed)
    segments = _segments(rng, rng.randint(0, 25))
    duration = (segments[-1].end if segments else 0.0) + rng.choice([0.0, 0.02, 0.5, 4.0])
    options = CueOptions(max_line_width=rng.choice([16, 42]), max_duration=rng.choice([2.0, 7.0]))
    # updates: groups of segments, ``until`` anywhere between the given segments' end and the next one's start
    updates, k = [], 0
    while k < len(segments):
        n = rng.randint(0, 3)
        group = segments[k : k + n]
        k += n
        low = max([s.end for s in segments[:k]], default=0.0)
        high = segments[k].start if k < len(segments) else duration
        updates.append((group, rng.uniform(low, max(low, high))))
    info = TranscriptionInfo("live", duration, "m", None)
    for name in LIVE_FORMATS:
        writer = LiveWriter(name, options)
        pieces = [writer.begin()]
        pieces += [writer.add(group, until) for group, until in updates]
        pieces.append(writer.add([], None, duration))
        whole = io.StringIO()
        get_writer(name, options).write(segments, info, whole)
        assert "".join(pieces) == whole.getvalue(), name


def test_a_cue_is_written_once_nothing_later_can_change_it():
    words = (Word("one", 1.0, 1.2, 1.0),)
    writer = LiveWriter("srt", CueOptions())
    first = Segment(0, 1.0, 1.2, "one", words)
    assert writer.add([first], until=1.3) == ""  # shorter than min_duration: a cue at 1.3 could cut it
    text = writer.add([], until=1.55)  # 1.0 + 0.5 s, + min_gap: final
    assert text == "1\n00:00:01,000 --> 00:00:01,500\none\n\n"
    assert writer.add([], None, 9.0) == ""


def test_json_cannot_be_written_live():
    with pytest.raises(ValueError, match="jsonl"):
        LiveWriter("json")


def test_live_segments_are_not_held_for_joins():
    from samba_cli.options import SegmentOptions

    joiner = CutJoiner(SegmentOptions(), join=False)
    first = Segment(7, 1.0, 2.0, "a", (Word("a", 1.0, 2.0, 1.0),))
    given = joiner.push(0, first)
    assert given is not None and given.id == 0  # numbered, given at once
    second = joiner.push(0, Segment(3, 2.05, 3.0, "b", (Word("b", 2.05, 3.0, 1.0),)))
    assert second is not None and (second.id, second.text) == (1, "b")  # 0.05 s apart, still not joined
    assert joiner.end(0) is None


# -- live windows --------------------------------------------------------------------------------------------------


def test_live_windows_never_wait_for_audio_after_the_window():
    """A window is out once its audio is in: at the first pause after window - margin, else at window length;
    silence comes as Gaps, and the windows with the gaps tile the stream."""
    from samba_cli.options import WindowOptions

    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000 * 7) / 16000)).astype(np.float32)
    samples = np.concatenate([tone, np.zeros(16000 * 8, np.float32), tone[: 16000 * 3]])
    samples += rng.normal(0, 1e-4, samples.size).astype(np.float32)
    options = WindowOptions(window_seconds=4.0, margin_seconds=1.0)
    from samba_cli.vad import EnergyDetector

    seen: list[tuple[float, Window | Gap]] = []
    fed = 0.0

    def blocks():
        nonlocal fed
        for start in range(0, samples.size, 1600):
            fed = (start + 1600) / 16000
            yield samples[start : start + 1600]

    for item in iter_windows(blocks(), options, EnergyDetector(), live=True):
        seen.append((fed, item))
    ends = [item.source_end for _, item in seen]
    assert [seen[0][1].source_start, *ends[:-1]] == [
        item.source_start for _, item in seen
    ]  # they tile the stream
    assert ends[-1] == pytest.approx(samples.size / 16000)
    total = samples.size / 16000
    for read, item in seen:
        assert item.source_end - item.source_start <= 4.0 + 1e-6
        if read < total:  # out as soon as its audio is in: its length, the cut score's half-width, one block
            assert read - item.source_start <= 4.0 + 0.192 + 0.1 + 1e-6
    assert any(isinstance(item, Gap) for _, item in seen), "the 8 s of silence come as gaps"
    batch = list(iter_windows([samples], options, EnergyDetector()))
    assert not any(isinstance(w, Gap) for w in batch)


# -- the library: a slow source ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> np.ndarray:
    clip = speech_16k("Hello there. This is a test of live transcription.", tmp_path_factory.mktemp("talk"))
    gap = np.zeros(16000, np.float32)
    return np.concatenate([clip, gap, clip, gap, clip])


@needs_speech
def test_a_slow_source_gets_segments_before_it_ends(checkpoint, talk):
    import samba_cli

    model = samba_cli.load_model(checkpoint, device="cpu")
    ended = threading.Event()
    step = 1600

    def slow():
        for start in range(0, talk.size, step):
            time.sleep(0.01)
            yield talk[start : start + step]
        ended.set()

    options = TranscribeOptions.from_kwargs(vad=False, blank_threshold=0.05, window_seconds=3.0)
    updates, info = model.transcribe_live(slow(), options)
    early, seen = [], []
    for update in updates:
        seen.append(update)
        if update.segments and not ended.is_set():
            early.append(update)
    assert early, "no segment was given before the source ended"
    assert seen[-1].final and not any(u.final for u in seen[:-1])
    untils = [u.until for u in seen]
    assert untils == sorted(untils) and untils[-1] == pytest.approx(talk.size / 16000)
    segments = [s for u in seen for s in u.segments]
    assert [s.id for s in segments] == list(range(len(segments)))
    for update in seen:
        assert all(s.start < update.until + 1e-6 for s in update.segments)
    assert info.options["decode"]["decoder"] == "attention"


@needs_speech
def test_falling_behind_switches_to_the_fastest_decoding_and_says_so_once(
    checkpoint, talk, caplog, monkeypatch
):
    import samba_cli
    import samba_cli.pipeline as pipeline_module

    clock = iter(range(0, 10_000, 50))  # every reading of the clock: 50 s later
    monkeypatch.setattr(pipeline_module.time, "monotonic", lambda: float(next(clock)))
    model = samba_cli.load_model(checkpoint, device="cpu")
    decoded = []
    decode = pipeline_module.decode

    def recording(model, segments, options, pieces, steppers=None):
        decoded.append(options.decoder)
        return decode(model, segments, options, pieces, steppers)

    monkeypatch.setattr(pipeline_module, "decode", recording)
    options = TranscribeOptions.from_kwargs(
        vad=False, blank_threshold=0.05, window_seconds=3.0, decoder="attention"
    )
    with caplog.at_level("WARNING", logger="samba_cli"):
        list(model.transcribe_live([talk], options)[0])
    warnings = [r for r in caplog.records if "behind the stream" in r.getMessage()]
    assert len(warnings) == 1 and "greedy CTC" in warnings[0].getMessage()
    assert decoded and decoded[0] == "attention" and decoded[-1] == "ctc"


# -- the command line ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def talk_wav(tmp_path_factory, talk) -> Path:
    path = tmp_path_factory.mktemp("wav") / "talk.wav"
    sf.write(path, talk, 16000)
    return path


def _segments_of(jsonl: Path) -> list[Segment]:
    out = []
    for line in jsonl.read_text().splitlines():
        item = json.loads(line)
        words = tuple(Word(w["text"], w["start"], w["end"], w["probability"]) for w in item["words"])
        out.append(
            Segment(
                item["id"],
                item["start"],
                item["end"],
                item["text"],
                words,
                item["avg_logprob"],
                item["no_speech_prob"],
            )
        )
    return out


@needs_speech
def test_live_files_parse_and_equal_the_writers_output_for_their_segments(checkpoint, talk_wav, tmp_path):
    out = tmp_path / "out"
    args = ["transcribe", str(talk_wav), "--live", "-m", str(checkpoint), "--no-vad", "-o", str(out)]
    result = runner.invoke(app, [*args, "-f", ",".join(LIVE_FORMATS), "--window-seconds", "3"])
    assert result.exit_code == 0, result.output
    segments = _segments_of(out / "talk.jsonl")
    assert segments, "the tiny model writes some text"
    info = TranscriptionInfo(str(talk_wav), sf.info(talk_wav).duration, "m", None)
    for name in LIVE_FORMATS:
        whole = io.StringIO()
        get_writer(name, CueOptions()).write(segments, info, whole)
        assert (out / f"talk.{name}").read_text() == whole.getvalue(), name
    assert len(list(srt.parse((out / "talk.srt").read_text()))) >= len(segments)
    assert len(webvtt.read(str(out / "talk.vtt"))) >= len(segments)
    refused = runner.invoke(app, [*args, "-f", "json"])
    assert refused.exit_code == 2 and "jsonl" in refused.output
    other = tmp_path / "other.wav"
    other.write_bytes(talk_wav.read_bytes())
    two = runner.invoke(app, ["transcribe", str(talk_wav), str(other), "--live", "-o", str(tmp_path)])
    assert two.exit_code == 2 and "one input" in two.output


def _feed_slowly(process: subprocess.Popen, data: bytes, stop: threading.Event) -> None:
    try:
        for start in range(0, len(data), 8000):
            if stop.is_set():
                break
            process.stdin.write(data[start : start + 8000])
            process.stdin.flush()
            time.sleep(0.05)
    except (OSError, ValueError):  # samba has ended: its stdin is closed
        pass


@needs_speech
def test_ctrl_c_in_a_live_run_leaves_whole_cues_and_writes_what_was_read(checkpoint, talk, tmp_path):
    wav = io.BytesIO()
    sf.write(wav, np.concatenate([talk] * 8), 16000, format="WAV")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            *SAMBA,
            "transcribe",
            "-",
            "--live",
            "-m",
            str(checkpoint),
            "--no-vad",
            "-f",
            "srt,jsonl",
            "-o",
            str(out),
        ]
        + ["--window-seconds", "3", "--threads", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stop = threading.Event()
    feeder = threading.Thread(target=_feed_slowly, args=(process, wav.getvalue(), stop), daemon=True)
    feeder.start()
    srt_file = out / "stdin.srt"
    deadline = time.monotonic() + 90
    while not (srt_file.exists() and srt_file.read_text().count("-->") >= 1):
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "no cue was written while the input was still coming"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr.decode()
    assert b"stopping" in stderr
    text = srt_file.read_text()
    cues = list(srt.parse(text))
    assert cues and text.endswith("\n\n") and srt.compose(cues, reindex=False) == text  # whole cues only
    segments = _segments_of(out / "stdin.jsonl")
    assert segments and segments[-1].end <= len(talk) * 8 / 16000
