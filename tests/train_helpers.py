"""A tiny corpus for training and evaluation tests: tone-and-noise FLAC files with a JSONL manifest."""

import json

import numpy as np
import soundfile as sf

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
