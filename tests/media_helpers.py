"""Test media made on the fly: espeak-ng speech, sox, and the same ffmpeg that samba_cli.audio runs.

Nothing is downloaded and nothing is stored in the repository; tests that need a missing tool are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from samba_cli.audio import SAMPLE_RATE, ffmpeg_path

ESPEAK = shutil.which("espeak-ng")
SOX = shutil.which("sox")

requires_espeak = pytest.mark.skipif(
    ESPEAK is None, reason="espeak-ng is not installed (apt install espeak-ng)"
)
requires_sox = pytest.mark.skipif(SOX is None, reason="sox is not installed (apt install sox)")


def skip_without(*tools: str) -> None:
    """Skip the calling test (or fixture) when one of the command-line ``tools`` is not installed."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt install {' '.join(missing)})")


SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs far away into the quiet forest."


def run_ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg that samba_cli uses, overwriting outputs, failing loudly."""
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(command, check=True, capture_output=True)


def speak(text: str, path: Path) -> Path:
    """Write espeak-ng's reading of ``text`` to ``path`` (a WAV at espeak's own 22050 Hz, mono)."""
    subprocess.run([ESPEAK, "-w", str(path), text], check=True, capture_output=True)
    return path


def speech_16k(text: str, directory: Path) -> np.ndarray:
    """espeak-ng speech resampled by sox to 16 kHz mono. Returns (N,) float32."""
    raw = speak(text, directory / "speech_raw.wav")
    resampled = directory / "speech_16k.wav"
    subprocess.run([SOX, str(raw), "-r", str(SAMPLE_RATE), "-c", "1", str(resampled)], check=True)
    return sf.read(resampled, dtype="float32")[0]


@dataclass(frozen=True)
class Layout:
    samples: np.ndarray  # (N,) float32 16 kHz: speech clips separated by digital silence
    speech: tuple[tuple[int, int], ...]  # sample ranges of the speech clips, end exclusive
    silence: tuple[tuple[int, int], ...]  # sample ranges of the silences between and around them


def speech_and_silence(clip: np.ndarray, seconds: float, seed: int = 0) -> Layout:
    """``clip`` repeated with random silences of 0.8-3 s before each copy, cut at ``seconds``."""
    rng = np.random.default_rng(seed)
    total = round(seconds * SAMPLE_RATE)
    parts, speech, silence, position = [], [], [], 0
    while position < total:
        gap = round(rng.uniform(0.8, 3.0) * SAMPLE_RATE)
        parts.append(np.zeros(gap, dtype=np.float32))
        silence.append((position, min(position + gap, total)))
        position += gap
        if position < total:
            parts.append(clip)
            speech.append((position, min(position + clip.size, total)))
            position += clip.size
    return Layout(np.concatenate(parts)[:total], tuple(speech), tuple(silence))


def in_any(position: float, ranges: tuple[tuple[int, int], ...]) -> bool:
    """True when ``position`` (samples) lies in one of ``ranges``, ends included."""
    return any(start <= position <= end for start, end in ranges)


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
