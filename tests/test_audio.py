"""audio.py: containers and codecs decode to 16 kHz mono of the right length; typed one-line errors."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from samba_cli import audio
from samba_cli.audio import SAMPLE_RATE, ffmpeg_path, iter_audio, load_audio
from samba_cli.errors import (
    DecodeError,
    EmptyAudioError,
    InputNotFoundError,
    MediaError,
    NoAudioStreamError,
    NotAFileError,
)
from tests.media_helpers import SENTENCE, SOX, requires_espeak, requires_sox, run_ffmpeg, speak

pytestmark = requires_espeak

# Seconds of length difference allowed. ffmpeg trims codec delay and padding (mp3 LAME tag, AAC and opus
# priming) exactly, so lossy codecs keep the length to the sample too.
TOLERANCE = 2 / SAMPLE_RATE
STDIN_TOLERANCE = 0.01  # a pipe cannot seek to the end, where an mp3 keeps its padding length

# name -> (output file name, ffmpeg arguments after the inputs, with a video stream)
FORMATS = {
    "mp3": ("speech.mp3", ["-c:a", "libmp3lame", "-b:a", "64k"], False),
    "m4a-aac": ("speech.m4a", ["-c:a", "aac", "-b:a", "64k"], False),
    "ogg-vorbis": ("speech.ogg", ["-c:a", "libvorbis"], False),
    "opus": ("speech.opus", ["-c:a", "libopus", "-b:a", "24k"], False),
    "flac-48k": ("speech48k.flac", ["-ar", "48000", "-c:a", "flac"], False),
    "mp4-h264-aac": ("video.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"], True),
    "mkv-mpeg4-flac": ("video.mkv", ["-c:v", "mpeg4", "-c:a", "flac"], True),
    "webm-vp8-opus": ("video.webm", ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"], True),
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """espeak-ng speech as a 22050 Hz WAV, and its duration in seconds."""
    path = speak(SENTENCE, tmp_path_factory.mktemp("audio") / "speech.wav")
    return path, sf.info(path).duration


def encode(speech: tuple[Path, float], name: str) -> Path:
    source, duration = speech
    filename, codec, video = FORMATS[name]
    output = source.parent / filename
    if not output.exists():
        inputs = ["-i", source]
        if video:
            testsrc = f"testsrc=size=64x64:rate=10:duration={duration + 1:.2f}"
            inputs = ["-f", "lavfi", "-i", testsrc, *inputs, "-map", "0:v", "-map", "1:a"]
        run_ffmpeg(*inputs, *codec, output)
    return output


def assert_one_line(error: MediaError, name: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{name}: ")
    assert error.source == name


@pytest.mark.parametrize("name", FORMATS)
def test_formats_decode_to_16k_mono_with_the_right_duration(speech, name):
    path = encode(speech, name)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / SAMPLE_RATE - speech[1]) <= TOLERANCE
    assert np.sqrt(np.mean(samples**2)) > 0.02 and np.abs(samples).max() <= 1.0


def test_resampled_wav_matches_the_source(speech):
    source, duration = speech
    samples = load_audio(source)
    assert abs(samples.size / SAMPLE_RATE - duration) <= TOLERANCE
    reference, rate = sf.read(source, dtype="float32")
    assert rate == 22050
    # Band-limited resampling keeps the level of every 0.1 s stretch.
    level = [np.sqrt(np.mean(chunk**2)) for chunk in np.array_split(samples, 30)]
    expected = [np.sqrt(np.mean(chunk**2)) for chunk in np.array_split(reference, 30)]
    np.testing.assert_allclose(level, expected, rtol=0.05, atol=1e-3)


@requires_sox
def test_stereo_is_downmixed(speech, tmp_path):
    stereo = tmp_path / "stereo.flac"
    subprocess.run([SOX, str(speech[0]), "-r", "44100", "-c", "2", str(stereo)], check=True)
    assert abs(load_audio(stereo).size / SAMPLE_RATE - speech[1]) <= TOLERANCE


@requires_sox
def test_16k_mono_fast_path_equals_ffmpeg(speech, tmp_path):
    wav = tmp_path / "speech16k.wav"
    subprocess.run([SOX, str(speech[0]), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    disguised = tmp_path / "speech16k.bin"  # not a soundfile suffix: ffmpeg decodes it
    shutil.copy(wav, disguised)
    np.testing.assert_array_equal(load_audio(wav), load_audio(disguised))


def test_blocks_have_the_requested_size(speech):
    blocks = list(iter_audio(speech[0], block_seconds=0.5))
    assert {block.size for block in blocks[:-1]} == {8000}
    assert 0 < blocks[-1].size <= 8000
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(speech[0]))


def test_stdin_monkeypatched(speech, monkeypatch):
    data = encode(speech, "mp3").read_bytes()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))
    assert abs(load_audio("-").size / SAMPLE_RATE - speech[1]) <= STDIN_TOLERANCE


def test_stdin_of_a_subprocess(speech):
    path = encode(speech, "ogg-vorbis")
    code = "from samba_cli.audio import load_audio; print(load_audio('-').size)"
    with path.open("rb") as stdin:
        result = subprocess.run([sys.executable, "-c", code], stdin=stdin, capture_output=True, check=True)
    assert abs(int(result.stdout) / SAMPLE_RATE - speech[1]) <= STDIN_TOLERANCE


def test_undecodable_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(b"hello, not media\n" * 100)))
    with pytest.raises(DecodeError) as caught:
        load_audio("-")
    assert_one_line(caught.value, "-")
    assert "standard input" in str(caught.value)


def test_mp4_with_its_index_at_the_end_on_stdin_names_the_cause(tmp_path, monkeypatch):
    """main said "standard input contains no audio samples" where ffmpeg said the input was partial."""
    m4a = tmp_path / "tone.m4a"  # ffmpeg writes the moov atom after the audio unless asked for +faststart
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=60", "-ar", "16000", "-c:a", "aac", m4a)
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(m4a.read_bytes())))
    with pytest.raises(DecodeError) as caught:
        load_audio("-")
    assert_one_line(caught.value, "-")
    assert "moov atom" in str(caught.value) and "give the file's path instead" in str(caught.value)
    assert load_audio(str(m4a)).size > 0  # the same file by path decodes


def test_empty_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(b"")))
    with pytest.raises(EmptyAudioError) as caught:
        load_audio("-")
    assert_one_line(caught.value, "-")


def test_truncated_mp3_keeps_what_decodes_and_warns(speech, tmp_path, caplog):
    whole = encode(speech, "mp3").read_bytes()
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(whole[: len(whole) // 3])
    with caplog.at_level(logging.WARNING, logger="samba_cli.audio"):
        samples = load_audio(truncated)
    assert 0.2 * speech[1] < samples.size / SAMPLE_RATE < 0.6 * speech[1]
    assert any("truncated.mp3" in record.getMessage() for record in caplog.records)


def test_truncated_16k_wav_keeps_what_decodes_and_warns(tmp_path, caplog):
    wav = tmp_path / "cut.wav"
    sf.write(wav, np.full(SAMPLE_RATE * 2, 0.1, np.float32), SAMPLE_RATE, subtype="PCM_16")
    wav.write_bytes(wav.read_bytes()[: 44 + SAMPLE_RATE])  # half a second of 2 s
    with caplog.at_level(logging.WARNING, logger="samba_cli.audio"):
        samples = load_audio(wav)
    assert samples.size == SAMPLE_RATE // 2
    assert any("cut.wav" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records)


def _write_later(path: str, data: bytes) -> threading.Thread:
    """A writer that opens ``path`` (a named pipe: blocks until a reader opens it) and writes ``data``."""

    def write() -> None:
        with open(path, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


@pytest.mark.parametrize("name", ["wav", "mp3"])
def test_a_named_pipe_is_read_once_and_whole(speech, tmp_path, name):
    """main read a FIFO with ffmpeg by path, after the duration probe (for the ETA) had eaten its start: a 3.8 s
    wav came back as 2 s of garbled audio, an mp3 as "not a media file"."""
    from samba_cli.batch import probe_duration

    data = (speech[0] if name == "wav" else encode(speech, "mp3")).read_bytes()
    fifo = tmp_path / f"input.{name}"
    os.mkfifo(fifo)
    assert audio.is_stream(fifo) and probe_duration(str(fifo)) is None  # returns at once, reads nothing
    writer = _write_later(str(fifo), data)
    samples = load_audio(fifo)
    writer.join(10)
    expected = load_audio(speech[0] if name == "wav" else encode(speech, "mp3"))
    assert abs(samples.size - expected.size) <= 0.05 * SAMPLE_RATE
    if name == "wav":
        np.testing.assert_allclose(samples, expected, atol=1e-6)


def test_process_substitution_path_is_read_here(speech):
    """``samba transcribe <(cat x.mp3)``: /dev/fd/N exists in this process only (main: "No such file")."""
    data = encode(speech, "mp3").read_bytes()
    read_end, write_end = os.pipe()
    try:
        writer = threading.Thread(
            target=lambda: (os.write(write_end, data), os.close(write_end)), daemon=True
        )
        writer.start()
        samples = load_audio(f"/dev/fd/{read_end}")
        writer.join(10)
    finally:
        os.close(read_end)
    assert abs(samples.size / SAMPLE_RATE - speech[1]) <= STDIN_TOLERANCE


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(DecodeError) as caught:
        load_audio(path)
    assert_one_line(caught.value, str(path))
    assert "not a media file" in str(caught.value)


def test_video_without_audio(tmp_path):
    path = tmp_path / "silent.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1", "-an", "-c:v", "libx264", path)
    with pytest.raises(NoAudioStreamError) as caught:
        load_audio(path)
    assert_one_line(caught.value, str(path))


@pytest.mark.parametrize("rate", [16000, 22050], ids=["soundfile", "ffmpeg"])
def test_zero_length_audio(tmp_path, rate):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), rate)
    with pytest.raises(EmptyAudioError) as caught:
        load_audio(path)
    assert_one_line(caught.value, str(path))


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp3"
    path.touch()
    with pytest.raises(EmptyAudioError) as caught:
        load_audio(path)
    assert_one_line(caught.value, str(path))


def test_directory(tmp_path):
    with pytest.raises(NotAFileError) as caught:
        iter_audio(tmp_path)
    assert_one_line(caught.value, str(tmp_path))


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.m4a"
    with pytest.raises(InputNotFoundError) as caught:
        iter_audio(path)
    assert_one_line(caught.value, str(path))


def test_closing_early_kills_ffmpeg(speech, monkeypatch):
    started = []

    def spy(name: str, stdin: bool, own_session: bool = False) -> subprocess.Popen:
        started.append(start(name, stdin, own_session))
        return started[-1]

    start = audio._start_ffmpeg
    monkeypatch.setattr(audio, "_start_ffmpeg", spy)
    blocks = iter_audio(encode(speech, "mp3"), block_seconds=0.1)
    next(blocks)
    assert started[0].poll() is None
    blocks.close()
    assert started[0].poll() is not None


def test_ffmpeg_path_is_executable():
    assert Path(ffmpeg_path()).is_file()


def test_block_seconds_must_be_positive(speech):
    with pytest.raises(ValueError, match="block_seconds"):
        iter_audio(speech[0], block_seconds=0)
