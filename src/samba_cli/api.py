"""Library entry point: ``load_model(...)`` returns a :class:`Transcriber` whose ``transcribe`` yields Segments."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from samba_cli.audio import SAMPLE_RATE, is_stream, iter_audio
from samba_cli.decoding.stepper import StepperFactory
from samba_cli.device import resolve_device, resolve_precision
from samba_cli.errors import CheckpointError
from samba_cli.hub import ResolvedModel, resolve_model
from samba_cli.model import SambaASR, load_checkpoint
from samba_cli.model.checkpoint import TOKENIZER_FILE, read_config_file
from samba_cli.options import ModelFacts, ResolvedOptions, TranscribeOptions, recommended_decoder, resolve
from samba_cli.pipeline import FLUSH, Pipeline, SourceEvent, pipeline_decoder_frames
from samba_cli.results import LiveUpdate, Segment, TranscriptionInfo
from samba_cli.tokenizer import Tokenizer
from samba_cli.windows import Gap, Window, iter_windows

logger = logging.getLogger(__name__)

AudioInput = str | os.PathLike | np.ndarray | Iterable[np.ndarray]  # what transcribe() accepts
LIVE_BLOCK_SECONDS = 0.25  # a live stream is read in blocks of at most this much audio, as it arrives


class Transcriber:
    """A loaded model and tokenizer, ready to transcribe."""

    def __init__(self, model: SambaASR, tokenizer: Tokenizer, resolved: ResolvedModel) -> None:
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(
                f"{resolved.path}: tokenizer has {tokenizer.vocab_size} pieces, model expects {model.config.vocab_size}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.resolved = resolved
        self._steppers: dict[tuple[int, bool], StepperFactory] = {}  # CUDA graphs survive across files
        self.metadata = metadata = read_config_file(resolved.path).get("metadata") or {}
        try:
            recommended_decoder(metadata)  # a bad metadata.default_decoder fails at load, not at decoding
        except ValueError as error:
            raise CheckpointError(f"{resolved.path}: {error}") from None

    @property
    def facts(self) -> ModelFacts:
        """What resolving options needs to know of this model: its folder, metadata, CTC head."""
        return ModelFacts(Path(self.resolved.path), self.metadata, self.model.ctc_head is not None)

    def resolve_options(self, options: TranscribeOptions | ResolvedOptions | None = None) -> ResolvedOptions:
        """The options with every choice made for this model on its device (:func:`samba_cli.options.resolve`);
        OptionError (a ValueError) for options the model cannot run. Resolved options are given back as they
        are."""
        return resolve(options or TranscribeOptions(), self.facts, self.device.type)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def transcribe(
        self,
        audio: AudioInput,
        options: TranscribeOptions | ResolvedOptions | None = None,
        source: str | None = None,
        **overrides,
    ) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """Transcribe a media path ("-" for stdin), 16 kHz mono float32 samples, or an iterable of such blocks.

        Returns a lazy generator of Segments and an info object; nothing is decoded until the generator is
        iterated, and ``info.duration`` is final once it is exhausted. ``source`` names the input in the info
        (default: the path, or "<array>"). ``overrides`` replace option fields by name, nested ones included
        (``beam_size=5``, ``vad=False``, ``lm=None``, ...). ``options`` resolved already
        (:meth:`resolve_options`) are used as they are, without overrides.
        """
        options = self._resolved(options, overrides)
        info = self._info(source or _name(audio), options)
        return self._pipeline(options).run(self._windows(audio, info, options)), info

    def transcribe_many(
        self,
        inputs: Iterable[AudioInput | tuple[AudioInput, str]],
        options: TranscribeOptions | ResolvedOptions | None = None,
        **overrides,
    ) -> tuple[Iterator[SourceEvent], list[TranscriptionInfo]]:
        """Transcribe several inputs (each as for :meth:`transcribe`, or an ``(audio, source name)`` pair) with
        encoder and decoder batches shared across them.

        Returns a lazy iterator of :class:`~samba_cli.pipeline.SourceEvent` (``event.source`` is the input's
        position: its segments in order, then one end event, ``done`` or with the ``error`` that stopped that
        input) and the list of the inputs' info objects, which grows as inputs are opened: ``infos[k]`` exists
        once an event of input ``k`` has been given. Inputs are read one after the other, lazily; a bad input
        does not stop the others. Standard input (``"-"``) may block, so the inputs before it are finished first.
        """
        options = self._resolved(options, overrides)
        infos: list[TranscriptionInfo] = []

        def sources() -> Iterator[Iterator[Window] | object]:
            for item in inputs:
                audio, source = item if isinstance(item, tuple) else (item, None)
                name = source or _name(audio)
                if is_stream(name) and infos:
                    yield FLUSH  # standard input or a named pipe may block: finish the earlier inputs first
                infos.append(self._info(name, options))
                yield self._windows(audio, infos[-1], options)

        return self._pipeline(options).run_sources(sources()), infos

    def transcribe_live(
        self,
        audio: AudioInput,
        options: TranscribeOptions | ResolvedOptions | None = None,
        source: str | None = None,
        stream_start: float | None = None,
        **overrides,
    ) -> tuple[Iterator[LiveUpdate], TranscriptionInfo]:
        """Transcribe a stream as it comes: ``audio`` as for :meth:`transcribe` (a path, ``"-"``, a named pipe,
        or an iterable of sample blocks that arrive over time). Returns a lazy iterator of
        :class:`~samba_cli.results.LiveUpdate` and the info object.

        Audio is read as it arrives; a window is closed at the first pause after ``window_seconds - margin`` or
        at ``window_seconds`` (never waiting for later audio), and its segments are decoded and given at once
        (unlike :meth:`transcribe`, segments that a window cut splits are not joined): each update holds the
        segments of one window and how far the stream has been transcribed (``until``), so a consumer knows when
        nothing earlier can come. The last update is ``final``. When decoding falls more than two windows behind the stream (which
        is taken to arrive in real time), it goes on with greedy CTC until it has caught up, and says so once
        (a warning of the ``samba_cli`` logger); ``stream_start``: the ``time.monotonic()`` at which the stream
        began (the command line gives its own start: the source began with it), by default when reading starts.
        :func:`samba_cli.audio.stop_reading` (from a signal handler) ends the stream there: what was read is
        transcribed and given."""
        options = self._resolved(options, overrides)
        info = self._info(source or _name(audio), options)
        pipeline = self._pipeline(options, live=True, stream_start=stream_start)
        windows = self._windows(audio, info, options, live=True)

        def updates() -> Iterator[LiveUpdate]:
            segments: list[Segment] = []
            for event in pipeline.run_sources([windows]):
                if event.error is not None:
                    raise event.error
                if event.segment is not None:
                    segments.append(event.segment)
                elif event.until is not None:
                    yield LiveUpdate(tuple(segments), event.until)
                    segments = []
            yield LiveUpdate(tuple(segments), info.duration, final=True)

        return updates(), info

    def _resolved(
        self, options: TranscribeOptions | ResolvedOptions | None, overrides: dict
    ) -> ResolvedOptions:
        if isinstance(options, ResolvedOptions):
            if overrides:
                raise TypeError("options resolved already take no overrides: resolve the changed options")
            return options
        return self.resolve_options(TranscribeOptions.from_kwargs(options, **overrides))

    def _info(self, source: str, options: ResolvedOptions) -> TranscriptionInfo:
        return TranscriptionInfo(
            source=source,
            duration=0.0,
            model=self.resolved.model_id,
            revision=self.resolved.revision,
            options=options.to_dict(),
        )

    def _windows(
        self, audio: AudioInput, info: TranscriptionInfo, options: ResolvedOptions, live: bool = False
    ) -> Iterator[Window | Gap]:
        """The input's windows, lazily; media is opened on the first ``next`` and ``info.duration`` counts up.
        ``live``: media is read as it arrives and cut without waiting (see :func:`iter_windows`)."""

        def counted() -> Iterator[np.ndarray]:
            if isinstance(audio, np.ndarray):
                blocks: Iterable[np.ndarray] = [np.asarray(audio, dtype=np.float32).reshape(-1)]
            elif isinstance(audio, (str, os.PathLike)):
                path = os.fspath(audio)
                blocks = iter_audio(path, LIVE_BLOCK_SECONDS, live=True) if live else iter_audio(path)
            else:
                blocks = audio
            samples = 0
            for block in blocks:
                samples += len(block)
                info.duration = samples / SAMPLE_RATE  # counted in samples: exact, as the windows' times
                yield block

        return iter_windows(counted(), options.window, live=live)

    def _pipeline(
        self, options: ResolvedOptions, live: bool = False, stream_start: float | None = None
    ) -> Pipeline:
        key = (pipeline_decoder_frames(self.model, options.segments), options.decode.cuda_graphs)
        if key not in self._steppers:
            self._steppers[key] = StepperFactory(self.model, *key)
        return Pipeline(
            self.model, self.tokenizer, options, self._steppers[key], live=live, stream_start=stream_start
        )


def _name(audio: AudioInput) -> str:
    if isinstance(audio, np.ndarray):
        return "<array>"
    if isinstance(audio, (str, os.PathLike)):
        return os.fspath(audio)
    return "<stream>"


def load_model(
    name_or_path: str | os.PathLike | None = None,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
    backend: str = "auto",
    threads: int | None = None,
) -> Transcriber:
    """Load a model from a local folder, a Hub repo id, or the bundled model (the default).

    ``device``: auto|cpu|cuda; ``dtype``: auto|float32|bfloat16|float16|int8 (auto: bfloat16 on CUDA, float32 on
    the CPU; int8: float32 with int8 linear layers, CPU only);
    ``backend``: auto|torch|fused SSD kernels; ``threads``: CPU threads for PyTorch.
    """
    if threads:
        torch.set_num_threads(threads)
    resolved = resolve_model(
        None if name_or_path is None else os.fspath(name_or_path),
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    dev = resolve_device(device)
    weights, int8 = resolve_precision(dtype, dev)
    model = load_checkpoint(resolved.path, device=dev, dtype=weights, backend=backend, int8=int8)
    tokenizer = Tokenizer(Path(resolved.path) / TOKENIZER_FILE)
    logger.info("loaded %s (%s, %s, %s backend)", resolved.model_id, dev, dtype, model.backend)
    return Transcriber(model, tokenizer, resolved)
