"""Peak memory of the input stage: stream a long generated file through iter_audio + iter_windows with VAD.

Builds a one-minute unit of espeak-ng speech and 0.8-3 s silences, loops it with ffmpeg into a low-bitrate file
of the requested length, then measures, in a fresh child process, the peak RSS of decoding it and cutting it
into windows with silero-vad (the model is not run: this is the input stage alone).

    nice python benchmarks/memory_windows.py --hours 3
    nice python benchmarks/memory_windows.py --input long.mp3   # measure an existing file only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from samba_cli.audio import SAMPLE_RATE, ffmpeg_path, iter_audio, load_audio
from samba_cli.windows import WindowOptions, iter_windows

TEXT = (
    "This is a long recording made for a memory benchmark. It alternates speech and silence, "
    "so that the voice activity detector has work to do and the windows are cut at quiet points."
)
CODECS = {  # name -> (file suffix, ffmpeg encoder arguments)
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-b:a", "16k"]),
    "opus": (".opus", ["-c:a", "libopus", "-b:a", "16k", "-compression_level", "0"]),
}


def make_input(directory: Path, hours: float, codec: str) -> Path:
    """A ``hours`` long file of looped speech and silence, encoded with ``codec``."""
    speech_wav = directory / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech_wav), TEXT], check=True, capture_output=True)
    speech = load_audio(speech_wav)
    rng = np.random.default_rng(0)
    parts, total = [], 0
    while total < 60 * SAMPLE_RATE:
        parts += [np.zeros(round(rng.uniform(0.8, 3.0) * SAMPLE_RATE), np.float32), speech]
        total += parts[-2].size + speech.size
    unit = directory / "unit.wav"
    sf.write(unit, np.concatenate(parts)[: 60 * SAMPLE_RATE], SAMPLE_RATE)
    suffix, encoder = CODECS[codec]
    output = directory / f"long-{hours:g}h{suffix}"
    loops = round(hours * 60) - 1
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    subprocess.run([*command, "-stream_loop", str(loops), "-i", str(unit), *encoder, str(output)], check=True)
    return output


def rss_mib() -> float:
    """Current resident set size of this process, MiB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def measure(path: Path, options: WindowOptions) -> dict[str, float]:
    """Stream ``path`` through the input stage; return sizes, times and memory."""
    from samba_cli.vad import SileroDetector

    detector = SileroDetector()
    detector.probabilities(np.zeros(SAMPLE_RATE, np.float32))  # load and warm up before the baseline
    baseline = rss_mib()
    started = time.perf_counter()
    decoded = windows = kept = 0
    sampled_peak = first_hour_peak = baseline

    def counted():
        nonlocal decoded
        for block in iter_audio(path):
            decoded += block.size
            yield block

    for window in iter_windows(counted(), options, detector):
        windows += 1
        kept += window.samples.size
        sampled_peak = max(sampled_peak, rss_mib())
        if window.source_end <= 3600:
            first_hour_peak = sampled_peak
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "audio_hours": decoded / SAMPLE_RATE / 3600,
        "windows": windows,
        "speech_kept_share": kept / decoded,
        "wall_seconds": seconds,
        "x_real_time": decoded / SAMPLE_RATE / seconds,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak,
        "peak_over_baseline_mib": peak - baseline,
        "peak_rss_sampled_per_window_mib": sampled_peak,
        "peak_rss_sampled_first_hour_mib": first_hour_peak,
        "decoded_whole_file_mib": decoded * 4 / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0, help="length of the generated input")
    parser.add_argument("--codec", choices=sorted(CODECS), default="mp3", help="codec of the generated input")
    parser.add_argument("--input", type=Path, help="measure this file instead of generating one")
    parser.add_argument("--window", type=float, default=WindowOptions.window_seconds, help="window seconds")
    parser.add_argument("--margin", type=float, default=WindowOptions.margin_seconds, help="margin seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object (used by the child)")
    args = parser.parse_args()
    options = WindowOptions(window_seconds=args.window, margin_seconds=args.margin)
    if args.input is not None:
        result = measure(args.input, options)
        print(json.dumps(result) if args.json else "\n".join(f"{k}: {v:.3f}" for k, v in result.items()))
        return
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        path = make_input(Path(directory), args.hours, args.codec)
        print(
            f"generated {path.name} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - started:.0f} s"
        )
        child = [sys.executable, __file__, "--input", str(path), "--json"]
        child += ["--window", str(args.window), "--margin", str(args.margin)]
        result = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
    for key, value in result.items():
        print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()
