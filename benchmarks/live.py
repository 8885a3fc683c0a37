"""Live transcription through a pipe: how long after the end of its last word each cue is written, how its words
compare with the whole-file transcript, and the memory of a long stream.

A recording of espeak-ng speech (the project's own docs read by several voices, pauses of 0.3-1.5 s between
sentences) is fed by ``ffmpeg -readrate R`` (R = 1: real time, as ``-re``) into
``samba transcribe - --live -f srt,jsonl -o DIR``. A poller reads the two files as they grow and notes when each
cue and segment arrives. For a cue, the end of its last word in the stream is taken from the segments' words
(cues split the words in order); its delay is the arrival time minus the time that word's end was fed
(``t0 + end / R``, t0 the start of ffmpeg, whose first bytes samba may only read after loading the model).
The words of the live transcript are compared with ``samba transcribe FILE`` (WER of one against the other,
after Whisper's English normaliser). The resident memory of samba is sampled every second.

    python benchmarks/live.py --minutes 10 --out docs/bench/live/latency.json
    python benchmarks/live.py --minutes 60 --rate 4 --out docs/bench/live/memory.json

Any extra arguments after ``--`` go to ``samba transcribe`` (both runs), e.g. ``-- --lm none``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp", "en-us+m3")


def sentences() -> list[str]:
    """Prose sentences of the project's docs (no code, tables or headings)."""
    out = []
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        prose, fenced = [], False
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and line.strip() and not line.lstrip().startswith(("#", "|", "<", "-")):
                prose.append(line.strip())
        text = re.sub(r"`[^`]*`|\[([^\]]*)\]\([^)]*\)|\*", r"\1", " ".join(prose))
        # no brackets: Whisper's normaliser drops bracketed text, which the voices read aloud
        text = re.sub(r"[()\[\]<>{}]", " ", text)
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 6 <= len(s.split()) <= 30]
    return out


def build_recording(minutes: float, folder: Path, seed: int = 0) -> Path:
    """About ``minutes`` of espeak-ng speech with pauses, as a 16 kHz WAV file in ``folder``, and its text beside
    it (``.txt``)."""
    rng = random.Random(seed)
    pool = sentences()
    pieces, texts, total, target = [], [], 0, int(minutes * 60 * RATE)
    while total < target:
        raw = folder / "s.wav"
        voice, speed, text = rng.choice(VOICES), rng.randint(140, 185), rng.choice(pool)
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
        texts.append(text)
        audio, rate = sf.read(raw, dtype="float32")
        steps = np.arange(0, len(audio), rate / RATE)
        pieces += [np.interp(steps, np.arange(len(audio)), audio).astype(np.float32)]
        pieces += [np.zeros(int(rng.uniform(0.3, 1.5) * RATE), np.float32)]
        total += len(pieces[-2]) + len(pieces[-1])
    path = folder / f"recording-{minutes:g}min.wav"
    sf.write(path, np.concatenate(pieces), RATE)
    path.with_suffix(".txt").write_text(" ".join(texts) + "\n")
    return path


class Poller(threading.Thread):
    """Notes the arrival time of each complete srt cue and jsonl line, and samples samba's resident memory."""

    def __init__(self, srt: Path, jsonl: Path, pid: int) -> None:
        super().__init__(daemon=True)
        self.srt, self.jsonl, self.pid = srt, jsonl, pid
        self.cues: list[float] = []  # arrival time of cue k
        self.lines: list[float] = []  # arrival time of jsonl line k
        self.rss: list[tuple[float, int]] = []  # (time, bytes)
        self.done = threading.Event()

    def run(self) -> None:
        last_rss = 0.0
        while not self.done.is_set():
            now = time.monotonic()
            if self.srt.exists():
                complete = self.srt.read_text().count("\n\n")
                self.cues += [now] * (complete - len(self.cues))
            if self.jsonl.exists():
                complete = self.jsonl.read_text().count("\n")
                self.lines += [now] * (complete - len(self.lines))
            if now - last_rss >= 1.0:
                last_rss = now
                rss = resident_bytes(self.pid)
                if rss:
                    self.rss.append((now, rss))
            time.sleep(0.02)


def resident_bytes(pid: int) -> int:
    """VmRSS of the process and its children (the search workers), 0 when it has ended."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0
    for process in [pid, *map(int, children)]:
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def samba_pid(shell: int) -> int:
    """The samba process started by the shell pipeline ``shell``."""
    for _ in range(200):
        found = subprocess.run(["pgrep", "-P", str(shell), "-f", "samba_cli"], capture_output=True, text=True)
        if found.stdout.split():
            return int(found.stdout.split()[0])
        time.sleep(0.05)
    raise RuntimeError("samba did not start")


def cue_word_ends(srt_text: str, words: list[dict]) -> list[float]:
    """For each cue, the end of its last word: cues take the transcript's words in order, a word of punctuation
    alone being part of the word before it."""
    spoken = [w for w in words if any(c.isalnum() for c in w["text"])]
    ends, k = [], 0
    for block in srt_text.strip().split("\n\n"):
        text = " ".join(block.split("\n")[2:])
        count = sum(any(c.isalnum() for c in token) for token in text.split())
        k += count
        ends.append(spoken[min(k, len(spoken)) - 1]["end"])
    return ends


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "count": len(ordered),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1.0, help="speed of the feed: 1 is real time")
    parser.add_argument("--recording", type=Path, help="a WAV file to use instead of building one")
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument("samba_args", nargs="*", help="after --: more options of samba transcribe")
    args = parser.parse_args()
    from samba_cli.audio import ffmpeg_path
    from samba_cli.options import WindowOptions
    from samba_cli.train.evaluate import count_errors, normalize

    work = Path(tempfile.mkdtemp(prefix="samba-live-"))
    recording = args.recording or build_recording(args.minutes, work)
    duration = sf.info(recording).duration
    samba = [sys.executable, "-c", "from samba_cli.cli import main; main()"]
    whole_dir, live_dir = work / "whole", work / "live"
    subprocess.run(
        [*samba, "transcribe", str(recording), "-f", "jsonl", "-o", str(whole_dir), "-q", *args.samba_args],
        check=True,
    )
    feed = [
        ffmpeg_path(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-readrate",
        str(args.rate),
        "-i",
        str(recording),
    ]
    live = [
        *samba,
        "transcribe",
        "-",
        "--live",
        "-f",
        "srt,jsonl",
        "-o",
        str(live_dir),
        "-q",
        *args.samba_args,
    ]
    command = f"{shlex.join([*feed, '-f', 'wav', '-'])} | {shlex.join(live)}"
    t0 = time.monotonic()
    shell = subprocess.Popen(["bash", "-c", command])
    pid = samba_pid(shell.pid)
    poller = Poller(live_dir / "stdin.srt", live_dir / "stdin.jsonl", pid)
    poller.start()
    shell.wait()
    poller.done.set()
    poller.join()
    run_seconds = time.monotonic() - t0
    live_segments = [json.loads(line) for line in (live_dir / "stdin.jsonl").read_text().splitlines()]
    whole_segments = [
        json.loads(line) for line in (whole_dir / f"{recording.stem}.jsonl").read_text().splitlines()
    ]
    words = [w for s in live_segments for w in s["words"]]
    cue_ends = cue_word_ends((live_dir / "stdin.srt").read_text(), words)
    cue_delays = [
        arrival - (t0 + end / args.rate) for arrival, end in zip(poller.cues, cue_ends, strict=False)
    ]
    segment_delays = [
        arrival - (t0 + s["words"][-1]["end"] / args.rate if s["words"] else t0 + s["end"] / args.rate)
        for arrival, s in zip(poller.lines, live_segments, strict=False)
    ]
    live_text = normalize(" ".join(s["text"] for s in live_segments))
    whole_text = normalize(" ".join(s["text"] for s in whole_segments))
    diff = count_errors(whole_text, live_text)
    spoken = recording.with_suffix(".txt")
    reference = normalize(spoken.read_text()) if spoken.exists() else None
    rss = poller.rss
    window = WindowOptions().window_seconds
    at = {
        minute: max((b for t, b in rss if t - t0 <= minute * 60 / args.rate), default=0)
        for minute in (10, 60)
    }
    result = {
        "recording_minutes": duration / 60,
        "feed_rate": args.rate,
        "samba_args": args.samba_args,
        "window_seconds": window,
        "run_seconds": run_seconds,
        "cue_delay_seconds": percentiles(cue_delays),
        "segment_delay_seconds": percentiles(segment_delays),
        "first_cue_delay_seconds": cue_delays[0] if cue_delays else None,
        "targets": {"p95": window + 3.0, "median": window + 1.5},
        "words_live_vs_whole": {"wer": diff.wer, "word_errors": diff.word_errors, "words": diff.words},
        "wer_against_the_spoken_text": None
        if reference is None
        else {
            "live": count_errors(reference, live_text).wer,
            "whole": count_errors(reference, whole_text).wer,
        },
        "segments": {"live": len(live_segments), "whole": len(whole_segments)},
        "peak_rss_mib": {f"at_{m}_min": b / 2**20 for m, b in at.items() if b},
        "peak_rss_mib_overall": max((b for _, b in rss), default=0) / 2**20,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
