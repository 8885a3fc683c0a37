"""Media in, float32 mono 16 kHz samples out, streamed in blocks.

Everything ffmpeg can read is decoded by an ffmpeg subprocess that writes raw ``f32le`` samples to a pipe; the
pipe is read one block at a time, so a three-hour file never sits in memory. WAV and FLAC files that are already
mono 16 kHz skip ffmpeg and are read block by block with soundfile (the samples are identical).

Partial decodes: when ffmpeg exits with status 0 but reported errors (a truncated or damaged mp3, say), the
samples it produced are kept and a warning is logged. A non-zero exit is always an error.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import ffmpeg
import numpy as np
import soundfile as sf

from samba_cli.errors import (
    DecodeError,
    EmptyAudioError,
    FFmpegNotFoundError,
    InputNotFoundError,
    NoAudioStreamError,
    NotAFileError,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz: every stage after this one works on 16 kHz mono
STDIN = "-"  # the source name that means "read media from standard input"

_BYTES_PER_SAMPLE = 4  # f32le
_STDIN_CHUNK = 1 << 16  # bytes copied from stdin to ffmpeg per write
_STDERR_LINES = 50  # ffmpeg stderr lines kept for error messages
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac"})  # probed for the fast path; others go to ffmpeg
_SOUNDFILE_FORMATS = frozenset({"WAV", "WAVEX", "FLAC"})
_NO_STREAM = re.compile(r"does not contain any stream|matches no streams|no audio stream", re.IGNORECASE)
_PARTIAL = re.compile(r"partial file|moov atom not found")  # an MP4 read through a pipe, index at its end
_TRUNCATED = re.compile(r"^data\s*:\s*\d+\s*\(should be", re.MULTILINE)  # libsndfile's note on a short WAV
_LOG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


@functools.lru_cache(maxsize=1)
def ffmpeg_path() -> str:
    """The ffmpeg executable: a system ``ffmpeg`` on PATH, else the binary bundled with imageio-ffmpeg."""
    system = shutil.which("ffmpeg")
    if system is not None:
        return system
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        raise FFmpegNotFoundError(
            f"ffmpeg not found: install ffmpeg or `pip install imageio-ffmpeg` ({error})"
        ) from error


def iter_audio(
    source: str | os.PathLike[str], block_seconds: float = 30.0, live: bool = False
) -> Iterator[np.ndarray]:
    """Decode ``source`` to float32 mono 16 kHz and yield it in blocks.

    Args:
        source: a media file path, or ``"-"`` to read the media from standard input. A path that is not a
            regular file (a named pipe, ``/dev/fd/N`` from a shell's process substitution, a device) is read by
            this process and fed to ffmpeg as standard input is: it is read once, from its start, by nobody else.
        block_seconds: the length of each yielded block; the last one is shorter.
        live: yield what ffmpeg has decoded as soon as it has (blocks of at most ``block_seconds``), and run
            ffmpeg in a session of its own, so that a Ctrl-C at the terminal reaches this process only, which
            then ends the input with :func:`stop_reading` and keeps what was read.

    Yields:
        (N,) float32 blocks, nominally in [-1, 1], N = round(block_seconds * 16000) except for the last one
        (live: 1 <= N <= that).

    Raises:
        InputNotFoundError, NotAFileError, EmptyAudioError: at call time, for a missing path, a directory or
            a 0-byte file.
        NoAudioStreamError, DecodeError, EmptyAudioError: while iterating, once ffmpeg has told.
        FFmpegNotFoundError: when no ffmpeg can be run.

    Closing the generator early (``break`` out of a loop, ``close()``) kills the ffmpeg subprocess.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be > 0, got {block_seconds}")
    block_samples = max(1, round(block_seconds * SAMPLE_RATE))
    name = os.fspath(source)
    if name == STDIN:
        return _iter_ffmpeg(STDIN, block_samples, live)
    path = Path(name)
    if not path.exists():
        raise InputNotFoundError(name, "no such file")
    if path.is_dir():
        raise NotAFileError(name, "is a directory, not a media file")
    if is_stream(name):
        return _iter_ffmpeg(name, block_samples, live)
    if path.stat().st_size == 0:
        raise EmptyAudioError(name, "the file is empty (0 bytes)")
    if _is_plain_16k_mono(path):
        return _iter_soundfile(path, name, block_samples)
    return _iter_ffmpeg(name, block_samples, live)


_STOP = threading.Event()  # set by stop_reading(): the inputs being read end here


def stop_reading() -> None:
    """End every input being read as if it ended now: each reader stops before its next block (a stream's
    after the block it waits for) and ffmpeg is stopped; what was read stays valid (no error). For a live run's
    Ctrl-C, from a signal handler; :func:`reset_reading` arms the readers again."""
    _STOP.set()


def reset_reading() -> None:
    """Undo :func:`stop_reading` for the inputs opened from now on."""
    _STOP.clear()


def is_stream(source: str | os.PathLike[str]) -> bool:
    """True for standard input and for existing paths that are not regular files (named pipes, ``/dev/fd/N``,
    devices): inputs that can be read only once, whose length nobody knows before the end."""
    name = os.fspath(source)
    if name == STDIN:
        return True
    try:
        mode = os.stat(name).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def load_audio(source: str | os.PathLike[str]) -> np.ndarray:
    """Decode a whole input at once (for short inputs and tests). Returns (N,) float32 at 16 kHz, N > 0."""
    return np.concatenate(list(iter_audio(source)))


def _is_plain_16k_mono(path: Path) -> bool:
    """True when soundfile reads ``path`` as WAV/FLAC that is already mono 16 kHz (no resampling needed)."""
    if path.suffix.lower() not in _SOUNDFILE_SUFFIXES:
        return False
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return False
    return info.format in _SOUNDFILE_FORMATS and info.samplerate == SAMPLE_RATE and info.channels == 1


def _iter_soundfile(path: Path, name: str, block_samples: int) -> Iterator[np.ndarray]:
    """Yield (block_samples,) float32 blocks straight from a mono 16 kHz WAV/FLAC."""
    total, truncated = 0, None
    try:
        with sf.SoundFile(str(path)) as file:
            # libsndfile counts the frames that are there; its notes say when the header declared more
            truncated = _TRUNCATED.search(file.extra_info)
            while not _STOP.is_set():
                block = file.read(block_samples, dtype="float32")
                if block.size == 0:
                    break
                total += block.size
                yield block
    except (sf.LibsndfileError, RuntimeError) as error:
        raise DecodeError(name, f"cannot read the audio data ({error})") from error
    if total == 0:
        raise EmptyAudioError(name, "contains no audio samples")
    if truncated:  # as ffmpeg's errors for a damaged mp3: keep what was read, and say so
        logger.warning(
            "%s: decoded %.1f s, less than its header declares: the file may be truncated",
            name,
            total / SAMPLE_RATE,
        )


def _start_ffmpeg(name: str, stdin: bool, own_session: bool = False) -> subprocess.Popen:
    """Start ffmpeg decoding ``name`` (or, with ``stdin``, what is written to its stdin) to f32le mono 16 kHz on
    its stdout; with ``own_session``, out of reach of the terminal's Ctrl-C."""
    stream = ffmpeg.input("pipe:" if stdin else f"file:{os.path.abspath(name)}")
    stream = stream.output(
        "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE, vn=None, sn=None, dn=None
    )
    stream = stream.global_args("-hide_banner", "-nostats", "-loglevel", "error")
    if not stdin:
        stream = stream.global_args("-nostdin")
    try:
        return subprocess.Popen(
            stream.compile(cmd=ffmpeg_path()),
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=own_session,
        )
    except OSError as error:
        raise FFmpegNotFoundError(f"cannot run ffmpeg at {ffmpeg_path()}: {error}") from error


def _iter_ffmpeg(name: str, block_samples: int, live: bool = False) -> Iterator[np.ndarray]:
    """Run ffmpeg on ``name`` and yield (block_samples,) float32 blocks read from its stdout (live: what has been
    decoded, up to that). Standard input and other streams (:func:`is_stream`) are read here and fed to ffmpeg's
    stdin."""
    streamed = is_stream(name)
    source = None
    if streamed and name != STDIN:
        try:  # opened in this process: /dev/fd/N exists here, not in ffmpeg's process
            source = open(name, "rb", buffering=0)  # noqa: SIM115 - closed by the feeder
        except OSError as error:
            raise DecodeError(name, f"cannot open the input ({error.strerror or error})") from error
    process = _start_ffmpeg(name, streamed, own_session=live)
    stderr = _StderrDrain(process.stderr)
    feeder = _StdinFeeder(process.stdin, source) if streamed else None
    total = 0
    carry = bytearray()  # live: the bytes of a sample split between two reads
    stopped = False
    try:
        while True:
            if _STOP.is_set():
                stopped = True
                break
            block = _read_available(process.stdout, block_samples, carry) if live else None
            if block is None:
                block = _read_block(process.stdout, block_samples)
            if block.size == 0:
                break
            total += block.size
            yield block
        if stopped:
            return
        returncode = process.wait()
        stderr.join()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    # The feeder is not joined: it may be blocked reading a terminal. It closes ffmpeg's stdin at end of
    # input, before ffmpeg can see end of file, so a count of 0 here is final.
    if feeder is not None and feeder.bytes_fed == 0:
        raise EmptyAudioError(name, "standard input is empty" if name == STDIN else "the input is empty")
    _check_result(name, returncode, list(stderr.lines), total, streamed)


def _read_available(stream, block_samples: int, carry: bytearray) -> np.ndarray:
    """What one read of ``stream`` gives, up to ``block_samples`` f32le samples, as (N,) float32; N is 0 only at
    end of stream. Bytes of a sample cut by the read wait in ``carry`` for the next one."""
    while True:
        chunk = stream.read1(block_samples * _BYTES_PER_SAMPLE)
        if not chunk:
            return np.zeros(0, dtype=np.float32)
        carry += chunk
        whole = len(carry) - len(carry) % _BYTES_PER_SAMPLE
        if whole:
            block = np.frombuffer(bytes(carry[:whole]), dtype="<f4").copy()
            del carry[:whole]
            return block


def _read_block(stream, block_samples: int) -> np.ndarray:
    """Read up to ``block_samples`` f32le samples from ``stream``; fewer only at end of stream. (N,) float32."""
    buffer = bytearray(block_samples * _BYTES_PER_SAMPLE)
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(view[filled:])
        if not count:
            break
        filled += count
    filled -= filled % _BYTES_PER_SAMPLE
    return np.frombuffer(buffer, dtype="<f4", count=filled // _BYTES_PER_SAMPLE)


class _StderrDrain(threading.Thread):
    """Keeps the last lines of ffmpeg's stderr, so that a full pipe never blocks the decoder."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream  # ffmpeg's stderr pipe (bytes)
        self.lines: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)  # newest last
        self.start()

    def run(self) -> None:
        for raw in self.stream:
            line = _LOG_PREFIX.sub("", raw.decode("utf-8", "replace")).strip()
            if line:
                self.lines.append(line)


class _StdinFeeder(threading.Thread):
    """Copies this process's standard input (or another unbuffered stream) into ffmpeg's stdin, then closes it."""

    def __init__(self, pipe, source=None) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe  # ffmpeg's stdin pipe (bytes)
        self.source = source  # an unbuffered binary file to read instead of standard input; closed at its end
        self.bytes_fed = 0  # bytes written so far
        self.start()

    def run(self) -> None:
        # The raw file, not its BufferedReader: a daemon thread blocked in BufferedReader.read holds the reader's
        # lock, and the interpreter aborts at exit when it cannot take it (Ctrl-C while stdin is still open).
        source = self.source or getattr(sys.stdin.buffer, "raw", sys.stdin.buffer)
        try:
            while chunk := source.read(_STDIN_CHUNK):
                self.bytes_fed += len(chunk)
                self.pipe.write(chunk)
                self.pipe.flush()  # a live source's bytes reach ffmpeg as they come
        except (OSError, ValueError):
            pass  # ffmpeg stopped reading (it failed, or the generator was closed): its exit status tells
        finally:
            with contextlib.suppress(OSError):
                self.pipe.close()
            if self.source is not None:
                with contextlib.suppress(OSError):
                    self.source.close()


def _check_result(name: str, returncode: int, stderr: list[str], total: int, streamed: bool = False) -> None:
    """Turn ffmpeg's exit status and stderr into a typed error, or a warning for a partial decode."""
    what = "standard input" if name == STDIN else "the input" if streamed else "the file"
    if returncode == 0 and total:
        if stderr:
            logger.warning(
                "%s: decoded %.1f s with errors, the audio may be incomplete (%s)",
                name,
                total / SAMPLE_RATE,
                stderr[-1],
            )
        return
    if any(_NO_STREAM.search(line) for line in stderr):
        raise NoAudioStreamError(name, f"{what} has no audio stream (video or data only)")
    if streamed and not total and any(_PARTIAL.search(line) for line in stderr):
        raise DecodeError(
            name,
            f"{what} is an MP4/M4A whose index (moov atom) is at its end, which ffmpeg cannot reach "
            "through a pipe; give the file's path instead (or remux it: ffmpeg -i IN -c copy -movflags "
            "+faststart OUT)",
        )
    if returncode == 0:
        raise EmptyAudioError(name, f"{what} contains no audio samples")
    reason = _reason(stderr)
    if total:
        seconds = total / SAMPLE_RATE
        raise DecodeError(name, f"decoding failed after {seconds:.1f} s (ffmpeg exit {returncode}: {reason})")
    if "Invalid data found" in reason:
        media = f"{what} is not media" if streamed else "not a media file"
        raise DecodeError(name, f"{media} ffmpeg can decode ({reason})")
    raise DecodeError(name, f"ffmpeg cannot decode {what} (exit {returncode}: {reason})")


def _reason(stderr: list[str]) -> str:
    """The most telling line of ffmpeg's stderr: the cause after "Error opening input:", else the last line."""
    for line in stderr:
        if line.startswith("Error opening input:"):
            return line.split(":", 1)[1].strip()
    return stderr[-1] if stderr else "no error message"
