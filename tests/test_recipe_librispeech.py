"""recipes/librispeech/run.sh end to end on a tiny corpus in LibriSpeech's layout, spoken by espeak-ng: lhotse
prepare -> tokenizer -> train -> average -> eval (WER on test-clean and test-other) -> package."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "librispeech" / "run.sh"
PARTS = {
    "train-clean-100": ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn",
                        "rain falls on the roof", "we read a good book", "time flies like an arrow"],
    "dev-clean": ["the sun is warm today", "she sells sea shells"],
    "test-clean": ["the dog sat on the roof", "a cat ran at dawn"],
    "test-other": ["birds read a book", "the rain is warm"],
}  # fmt: skip


def write_librispeech(root: Path) -> Path:
    """LibriSpeech/PART/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac (16 kHz) and SPEAKER-CHAPTER.trans.txt."""
    corpus = root / "LibriSpeech"
    for number, (part, sentences) in enumerate(PARTS.items()):
        speaker, chapter = 100 + number, 2000 + number
        folder = corpus / part / str(speaker) / str(chapter)
        folder.mkdir(parents=True)
        lines = []
        for i, text in enumerate(sentences):
            name = f"{speaker}-{chapter}-{i:04d}"
            wav = folder / f"{name}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
            subprocess.run(
                ["sox", str(wav), "-r", "16000", "-c", "1", str(folder / f"{name}.flac")], check=True
            )
            wav.unlink()
            lines.append(f"{name} {text.upper()}\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return corpus


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_recipe_runs_end_to_end_and_prints_wer(tmp_path):
    corpus = write_librispeech(tmp_path)
    env = dict(
        os.environ,
        CORPUS_DIR=str(corpus),
        TRAIN_PARTS="train-clean-100",
        DEV_PARTS="dev-clean",
        DATA=str(tmp_path / "data"),
        RUN=str(tmp_path / "run"),
        NAME="samba-test-librispeech",
        VOCAB="32",
        PRESET="tiny",
        MAX_STEPS="4",
        WARMUP="2",
        BATCH_SECONDS="8",
        BATCH_UTTERANCES="4",
        WORKERS="0",
        THREADS="1",
        SAVE_EVERY="2",
        KEEP_EVERY="2",
        VAL_EVERY="0",
        AVERAGE="2",
        TRAIN_OPTS="--buckets 2 --log-every 1",
    )
    done = subprocess.run(["bash", str(RECIPE)], env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    for part in ("test-clean", "test-other"):
        assert re.search(rf"{part}\.jsonl: WER \d+\.\d+% \(\d+/\d+\)", output), output[-4000:]
        assert (tmp_path / "run" / f"eval-{part}.json").is_file()
    assert "mean of 2 checkpoints" in output
    assert (tmp_path / "run" / "release" / "model.safetensors").is_file()
    assert "set HF_REPO" in output
    again = subprocess.run(
        ["bash", str(RECIPE)], env=dict(env, STOP_STAGE="3"), capture_output=True, text=True
    )
    assert again.returncode == 0 and "prepared already" in again.stdout  # finished stages are skipped
