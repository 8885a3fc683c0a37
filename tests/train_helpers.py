"""A tiny corpus for training and evaluation tests: tone-and-noise FLAC files with a JSONL manifest."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from samba_cli.model import PRESETS
from tests.model_helpers import TINY

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "she sells sea shells",
    "birds sing at dawn",
    "rain falls on the roof",
    "the sun is warm today",
    "we read a good book",
    "time flies like an arrow",
]


def write_corpus(folder, sentences=SENTENCES, seed=0):
    """Noise-and-tone utterances (0.6 to 1.2 s) with a manifest whose audio paths are relative to it."""
    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True)
    with (folder / "train.jsonl").open("w") as manifest:
        for i, text in enumerate(sentences):
            n = int(16000 * (0.6 + 0.6 * i / len(sentences)))
            t = np.arange(n) / 16000
            samples = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(n)
            sf.write(folder / "audio" / f"{i}.flac", samples.astype(np.float32), 16000)
            manifest.write(
                json.dumps({"audio": f"audio/{i}.flac", "text": text, "duration": n / 16000}) + "\n"
            )
    return folder / "train.jsonl"


def manifests_with_bad_audio(manifest, out_dir) -> list[tuple[object, str]]:
    """Copies of ``manifest`` (absolute audio paths) whose second entry names a missing file, then an undecodable
    one; returns (manifest path, the one-line error expected for it) for each."""
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    for entry in entries:
        entry["audio"] = str((manifest.parent / entry["audio"]).resolve())
    broken = out_dir / "broken.flac"
    broken.write_bytes(b"not audio at all\n")
    missing = out_dir / "missing.flac"
    cases = []
    for audio, error in (
        (missing, "{manifest}:2: {audio}: audio file not found"),
        (
            broken,
            "{audio}: ffmpeg cannot decode the file (exit 183: Nothing was written into output file, because at least one of its streams received no packets.)",
        ),
    ):
        edited = out_dir / f"{audio.stem}.jsonl"
        lines = [entries[0], dict(entries[1], audio=str(audio)), *entries[2:]]
        edited.write_text("".join(json.dumps(line) + "\n" for line in lines))
        cases.append((edited, "error: " + error.format(manifest=edited, audio=audio)))
    return cases


def write_cuts(manifest, out):
    """The utterances of a JSONL ``manifest`` as a lhotse CutSet written to ``out`` (.jsonl.gz); cut ids u0-0, u1-1..."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings, supervisions = [], []
    for i, line in enumerate(manifest.read_text().splitlines()):
        entry = json.loads(line)
        recording = Recording.from_file(manifest.parent / entry["audio"], recording_id=f"u{i}")
        recordings.append(recording)
        supervisions.append(
            SupervisionSegment(f"u{i}", f"u{i}", 0.0, recording.duration, text=entry["text"], language="en")
        )
    cuts = CutSet.from_manifests(
        RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)
    )
    cuts.to_file(out)
    return out


def tiny_train_config(manifest, tokenizer, out_dir, **changes):
    """A TrainConfig for the tiny "test" preset (tests register PRESETS["test"]): one thread, 12 quick steps,
    no augmentation; ``changes`` replace fields."""
    from samba_cli.train.config import TrainConfig

    base = TrainConfig(
        train_manifest=str(manifest),
        tokenizer=str(tokenizer),
        out_dir=str(out_dir),
        preset="test",
        max_batch_seconds=8.0,
        max_batch_utterances=8,
        accumulate=1,
        workers=0,
        threads=1,
        lr=3e-3,
        warmup_steps=2,
        max_steps=12,
        log_every=100,
        save_every=100,
        speeds=(1.0,),
        freq_masks=0,
        time_masks=0,
    )
    return base.replace(**changes)


# Autouse fixtures of the training tests; a test module takes them by importing them.
@pytest.fixture(autouse=True)
def test_preset(monkeypatch):
    """``--preset test``: the tiny model."""
    monkeypatch.setitem(PRESETS, "test", TINY)


@pytest.fixture(autouse=True)
def one_thread():
    """Training runs set torch's thread count (threads=1 below: tiny models on a busy machine); restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
