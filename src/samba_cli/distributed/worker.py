"""The callable class that Ray Data's ``map_batches`` runs on each actor of the pool.

One :class:`TranscribeBatch` per actor loads the model once; each call takes a batch of rows and transcribes them
together with :meth:`samba_cli.api.Transcriber.transcribe_many` (windows of the batch's files share encoder
batches, their segments share decoder batches), writes each input's transcripts, and returns one row of flat
columns per input (:data:`samba_cli.distributed.storage.INDEX_SCHEMA` less ``name``). A bad input is a row with
status ``failed`` and its error; it never fails the batch.

Input columns: ``path`` (a local path or an fsspec URL; required), ``bytes`` (the media itself, as
``ray.data.read_binary_files`` gives it; optional: read from ``path`` when absent) and ``outputs`` (a JSON list of
``[format, location]`` pairs to write; optional: nothing is written when absent, the transcript is in the
columns).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from samba_cli.cues import CueOptions
from samba_cli.distributed.storage import fetch, is_url, write_transcripts
from samba_cli.options import TranscribeOptions
from samba_cli.planning import Status
from samba_cli.results import Segment, TranscriptionInfo
from samba_cli.writers import LANGUAGE, JsonWriter


@dataclass(frozen=True)
class WorkerSpec:
    """What every actor needs to load the model and transcribe (sent to the actors, so plain picklable values)."""

    model: str | None = None  # Hub repo id or checkpoint folder (on every node); None: the bundled model
    revision: str | None = None  # Hub branch, tag or commit
    device: str = "auto"  # auto|cpu|cuda, on the actor's node
    dtype: str = "auto"  # auto|float32|bfloat16|float16
    threads: int | None = None  # torch CPU threads per actor; None: torch's choice (Ray sets it to num_cpus)
    local_files_only: bool = False  # never download the model
    options: TranscribeOptions = field(default_factory=TranscribeOptions)  # decoding, VAD, windows
    cue_options: CueOptions | None = None  # subtitle layout for srt and vtt


class TranscribeBatch:
    """``map_batches`` callable: ``{"path": [...], ...}`` -> ``{"path": [...], "status": [...], ...}``."""

    def __init__(self, spec: WorkerSpec) -> None:
        from samba_cli.api import load_model  # torch, in the actor only

        self.spec = spec
        self.transcriber = load_model(
            spec.model,
            revision=spec.revision,
            device=spec.device,
            dtype=spec.dtype,
            local_files_only=spec.local_files_only,
            threads=spec.threads,
        )
        self.options = self.transcriber.resolve_options(spec.options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(path) for path in batch["path"]]
        data = batch.get("bytes")
        outputs = batch.get("outputs")
        rows: list[dict[str, Any]] = [_row(path) for path in paths]
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="samba-ray-") as scratch:
            opened: list[tuple[int, str]] = []  # (row, local media path)
            for index, path in enumerate(paths):
                try:
                    opened.append(
                        (index, self._local_media(path, None if data is None else data[index], scratch))
                    )
                except Exception as error:  # unreadable object, no credentials: this input fails
                    _fail(rows[index], f"{path}: cannot read: {' '.join(str(error).split())}")
            cause = "transcription ended without a result"
            try:
                self._transcribe(opened, rows, outputs)
            except Exception as error:  # a bug or a resource failure: the inputs not finished fail with it
                cause = " ".join(str(error).split()) or type(error).__name__
            for row in rows:
                if not row["status"]:
                    _fail(row, f"{row['path']}: {cause}")
        _share_time(rows, time.monotonic() - start)
        return {
            key: np.array([row[key] for row in rows], dtype=float if key in _FLOATS else object)
            for key in _row("")
        }

    def _local_media(self, path: str, data: bytes | None, scratch: str) -> str:
        if data is not None:
            local = os.path.join(scratch, f"{len(os.listdir(scratch))}-{PurePosixPath(path).name}")
            with open(local, "wb") as stream:
                stream.write(data)
            return local
        return fetch(path, scratch) if is_url(path) else path

    def _transcribe(
        self, opened: Sequence[tuple[int, str]], rows: list[dict[str, Any]], outputs: np.ndarray | None
    ) -> None:
        events, infos = self.transcriber.transcribe_many(
            [(local, rows[index]["path"]) for index, local in opened], self.options
        )
        collected: list[list[Segment]] = [[] for _ in opened]
        for event in events:
            index, local = opened[event.source]
            row, info = rows[index], infos[event.source]
            if event.segment is not None:
                collected[event.source].append(event.segment)
            elif event.error is not None:  # the message names the scratch copy of a remote input
                _fail(row, str(event.error).replace(local, row["path"]))
            else:
                self._finish(row, collected[event.source], info, None if outputs is None else outputs[index])
                collected[event.source] = []

    def _finish(
        self, row: dict[str, Any], segments: list[Segment], info: TranscriptionInfo, outputs: str | None
    ) -> None:
        document = io.StringIO()
        JsonWriter().write(segments, info, document)
        parsed = json.loads(document.getvalue())
        row.update(duration=info.duration, text=parsed["text"], model=info.model)
        row["segments"] = json.dumps(parsed["segments"], ensure_ascii=False)
        try:
            pairs = [(fmt, location) for fmt, location in json.loads(outputs)] if outputs else []
            written = write_transcripts(pairs, segments, info, self.spec.cue_options)
        except Exception as error:
            _fail(row, f"{row['path']}: cannot write: {' '.join(str(error).split())}")
            return
        row.update(status=Status.DONE.value, outputs=json.dumps(written))


_FLOATS = frozenset({"duration", "decode_seconds"})  # columns of seconds; the others are strings


def _row(path: str) -> dict[str, Any]:
    """An output row before its input is transcribed (``status`` empty)."""
    return {
        "path": path,
        "status": "",
        "error": "",
        "duration": 0.0,
        "text": "",
        "segments": "[]",
        "language": LANGUAGE,
        "model": "",
        "decode_seconds": 0.0,
        "outputs": "[]",
    }


def _fail(row: dict[str, Any], message: str) -> None:
    row.update(status=Status.FAILED.value, error=message, outputs="[]")


def _share_time(rows: list[dict[str, Any]], seconds: float) -> None:
    """The batch's wall time shared across its inputs by audio duration (evenly when there is none)."""
    total = sum(row["duration"] for row in rows)
    for row in rows:
        row["decode_seconds"] = seconds * (row["duration"] / total if total > 0 else 1 / len(rows))
