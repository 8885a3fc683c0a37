"""The schedule of the transcription stages, as a lazy generator.

samples -> windows -> features -> encoder -> CTC posteriors -> segments -> decoder search -> alignment -> Segments

Windows come one at a time from the windowing stage of one or several sources. Consecutive windows, of one
source or of the next ones, are encoded together in one padded batch of at most ``encoder_batch_seconds`` of
audio; the segments they hold are pooled and decoded (samba_cli.decoding) in batches of ``batch_size``, across
windows and sources, turned into Segments (samba_cli.transcript) and given in source order as soon as their batch
is done.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from samba_cli.audio import SAMPLE_RATE
from samba_cli.decoding.attention import Hypothesis
from samba_cli.decoding.decode import Encoded, decode, decoder_frames
from samba_cli.decoding.stepper import StepperFactory
from samba_cli.errors import SambaError
from samba_cli.features import log_mel
from samba_cli.model import SambaASR
from samba_cli.options import ResolvedDecode, ResolvedOptions, SegmentOptions, fastest_decode
from samba_cli.results import Segment
from samba_cli.segments import FrameSpan, split_segments
from samba_cli.threads import read_ahead, torch_threads_here
from samba_cli.tokenizer import Tokenizer
from samba_cli.transcript import CutJoiner, SegmentBuilder
from samba_cli.windows import Gap, Window

logger = logging.getLogger(__name__)


class _Flush:
    def __repr__(self) -> str:
        return "FLUSH"


# in Pipeline.run_sources' sources: finish the queued work without waiting for the next source
FLUSH = _Flush()


@dataclass(frozen=True)
class SourceEvent:
    """One result of :meth:`Pipeline.run_sources`. Events come in source order: a source's segments, then its end.
    A live pipeline also gives progress events (``until``) between them."""

    source: int  # position of the source among the inputs
    segment: Segment | None = None  # the source's next non-empty segment; None: the source has ended
    error: SambaError | None = None  # at the end: why the source failed (segments given for it are void)
    # live only, on an event without segment: every segment of the source that starts before this many seconds
    # has been given (the stream has been read and transcribed up to here); the source goes on
    until: float | None = None

    @property
    def done(self) -> bool:
        """The source ended without error: all its segments have been given."""
        return self.segment is None and self.error is None and self.until is None


@dataclass
class _Pending:
    """A segment waiting for its decoder batch."""

    source: int
    window: Window
    span: FrameSpan
    encoded: Encoded  # the span's encoder frames plus the attention margin, and its CTC log-posteriors


@dataclass(frozen=True)
class _End:
    """The end of a source, queued behind its last window and segment."""

    source: int
    error: SambaError | None


@dataclass(frozen=True)
class _Mark:
    """Live: the end of a window (or of a stretch without speech), queued behind its segments."""

    source: int
    until: float  # seconds of the source read and cut into windows


@dataclass(frozen=True)
class _Encoded:
    # an encoder batch's segments and the source ends among its windows (live: marks), in order
    items: list[_Pending | _End | _Mark]


@dataclass(frozen=True)
class _Dropped:
    source: int  # a source whose media failed: its segments not decoded yet are dropped


@dataclass(frozen=True)
class _Decode:
    final: bool  # decode the full batches queued (final: all that is queued)


# audio the encoder thread may encode ahead of the decoding: enough windows for a few decoder batches (each of
# its events is an encoder batch or a decode mark; at least two encoder batches are ahead)
ENCODED_AHEAD_SECONDS = 120.0
# a live run decodes with the fastest decoding while it is more than this many window lengths behind the stream
LIVE_BEHIND_WINDOWS = 2.0


def encoder_threads(device: torch.device) -> int:
    """Torch threads of the thread that reads and encodes windows ahead of the decoding: half of the threads
    torch may use here (at most the usable cores); 0, no such thread, when that is one (one core, or
    ``--threads 1``) or the model runs on a GPU, and the windows are encoded in turn. (A GPU encodes fast, and
    CUDA work from another thread while the decoding captures a CUDA graph breaks the capture.)"""
    return torch_threads_here() // 2 if device.type == "cpu" else 0


class Pipeline:
    """Schedules the model stages over windows: encoder batches, decoder batches across windows and sources, and
    the order Segments are given in. Holds no per-source state besides the segment counters."""

    def __init__(
        self,
        model: SambaASR,
        tokenizer: Tokenizer,
        options: ResolvedOptions,
        steppers: StepperFactory | None = None,
        live: bool = False,
        stream_start: float | None = None,
    ) -> None:
        r"""``live``: windows (and :class:`~samba_cli.windows.Gap`\ s) are encoded one at a time and their
        segments decoded at once, each followed by a progress event (:attr:`SourceEvent.until`); when the
        decoding falls behind the stream, it goes on with the fastest decoding until it has caught up
        (:class:`LiveClock`; ``stream_start``: the ``time.monotonic()`` at which the stream began, by default when
        the pipeline starts reading it)."""
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.steppers = steppers or StepperFactory(
            model, pipeline_decoder_frames(model, options.segments), options.decode.cuda_graphs
        )
        self.frame_seconds = model.config.frame_seconds
        self.builder = SegmentBuilder(tokenizer, model.config, options)
        self.param = next(model.parameters())
        self.clock = LiveClock(options, model.ctc_head is not None, stream_start) if live else None

    @torch.inference_mode()
    def encode_windows(self, windows: list[Window], sources: list[int] | None = None) -> list[list[_Pending]]:
        """Features, encoder and CTC posteriors of windows in one padded batch, each cut into pending segments.

        A window encodes to the same frames alone or in a batch (padding is masked). ``sources`` tags each
        window's segments with its source index (default 0).
        """
        cfg = self.model.config
        feats = [log_mel(torch.from_numpy(w.samples).to(self.param.device), cfg.n_mels) for w in windows]
        if len(feats) == 1:
            batch, lengths = feats[0].unsqueeze(0), None
        else:
            batch = torch.nn.utils.rnn.pad_sequence([f.T for f in feats], batch_first=True).transpose(1, 2)
            lengths = torch.tensor([f.shape[1] for f in feats], device=batch.device)
        states, state_lengths = self.model.encode(batch.to(self.param.dtype), lengths)
        ctc = None
        if self.model.ctc_head is not None:
            ctc = torch.log_softmax(self.model.ctc_logits(states).float(), dim=-1)
        margin = round(self.options.segments.attention_margin_seconds / self.frame_seconds)
        out = []
        for row, window in enumerate(windows):
            frames = int(state_lengths[row])
            window_states = states[row, :frames]
            window_ctc = None if ctc is None else ctc[row, :frames]
            if window_ctc is None:
                spans = [FrameSpan(0, frames, 0.0)] if frames else []
            else:
                blank = window_ctc[:, cfg.blank_id].exp()
                spans = split_segments(blank, self.frame_seconds, self.options.segments)
            pending = []
            for span in spans:
                lo, hi = max(0, span.start - margin), min(frames, span.end + margin)
                span_ctc = None if window_ctc is None else window_ctc[span.start : span.end]
                encoded = Encoded(window_states[lo:hi], span.length, span_ctc)
                pending.append(_Pending(0 if sources is None else sources[row], window, span, encoded))
            out.append(pending)
        return out

    def decode_batch(self, batch: list[_Pending]) -> list[Hypothesis]:
        options = self.options.decode if self.clock is None else self.clock.decoding
        return decode(self.model, [p.encoded for p in batch], options, self.tokenizer.pieces, self.steppers)

    def run(self, windows: Iterable[Window]) -> Iterator[Segment]:
        """Windows of one source in order -> its non-empty Segments in order. A SambaError raised while the
        windows are read is raised again here."""
        for event in self.run_sources([windows]):
            if event.error is not None:
                raise event.error
            if event.segment is not None:
                yield event.segment

    def run_sources(self, sources: Iterable[Iterable[Window] | _Flush]) -> Iterator[SourceEvent]:
        """Several sources, each an iterable of its windows, read one after the other -> events in source order;
        segments that a window cut split are given joined (:class:`CutJoiner`)."""
        joiner = CutJoiner(self.options.segments, join=self.clock is None)  # live: final at its window's end
        for event in self._decoded_sources(sources):
            if event.until is not None:  # live progress: nothing is held (no joins)
                ready = None
            elif event.segment is None:
                ready = joiner.end(event.source)
            else:
                ready = joiner.push(event.source, event.segment)
            if ready is not None:
                yield SourceEvent(event.source, ready)
            if event.segment is None:  # the source's end, or live progress
                yield event

    def _decoded_sources(self, sources: Iterable[Iterable[Window] | _Flush]) -> Iterator[SourceEvent]:
        """:meth:`run_sources` before segments cut by a window boundary are joined.

        Windows of consecutive sources share encoder batches and their segments share decoder batches, so a
        source's segments may wait for the next source's to fill a batch. A SambaError raised while a source's
        windows are read (bad media) ends that source with an error event and drops its pending work; the
        other sources go on. Source ``k + 1`` is only asked for its windows after those of source ``k`` ran out.
        A :data:`FLUSH` among the sources finishes all the work queued so far without waiting for the next source
        (put it before a source that may block, such as standard input, so that earlier sources are not held
        back). With :func:`encoder_threads`, sources are read and encoded in a thread ahead of the decoding.
        """
        threads = encoder_threads(self.param.device)
        if self.clock is not None:
            self.clock.start()
        if not threads:
            events = self._encoded_sources(sources)
        else:  # the windows of the next sources are read and encoded in a thread while these decode
            batch = self.options.encoder_batch_seconds or self.options.window.window_seconds
            events = read_ahead(
                self._encoded_sources(sources, torch_threads=threads),
                2 * max(2, math.ceil(ENCODED_AHEAD_SECONDS / batch)),
            )
        # segments for the decoder, source ends and marks in order
        queue: deque[_Pending | _End | _Mark] = deque()
        counts: dict[int, int] = {}  # segments given so far per source
        for event in events:
            if isinstance(event, _Encoded):
                queue.extend(event.items)
            elif isinstance(event, _Dropped):
                queue = deque(p for p in queue if isinstance(p, _End) or p.source != event.source)
            else:
                yield from self._drain(queue, counts, final=event.final)

    def _encoded_sources(
        self, sources: Iterable[Iterable[Window] | _Flush], torch_threads: int | None = None
    ) -> Iterator[_Encoded | _Dropped | _Decode]:
        """The encoder's side of :meth:`_decoded_sources`: encoded batches, sources dropped by an error, and when
        to decode, in the order the decoder's side applies them. ``torch_threads``: torch's CPU threads for the
        thread that runs this generator (its own count; the decoding thread keeps its own)."""
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        budget = (self.options.encoder_batch_seconds or 0.0) * SAMPLE_RATE  # padded samples per encoder batch
        waiting: list[tuple[int, Window] | _End] = []  # windows for the encoder, with source ends in order
        source = -1
        for windows in sources:
            if self.clock is not None and windows is not FLUSH:
                source += 1
                yield from self._encoded_live(source, windows)
                continue
            if windows is FLUSH:
                yield _Encoded(self._encode(waiting))
                waiting = []
                yield _Decode(final=True)
                continue
            source += 1
            error = None
            try:
                for window in windows:
                    longest = max([len(w[1].samples) for w in waiting if not isinstance(w, _End)], default=0)
                    width = max(longest, len(window.samples))
                    if longest and (sum(not isinstance(w, _End) for w in waiting) + 1) * width > budget:
                        yield _Encoded(self._encode(waiting))
                        waiting = []
                        yield _Decode(final=False)
                    waiting.append((source, window))
            except SambaError as exc:
                error = exc
                waiting = [w for w in waiting if isinstance(w, _End) or w[0] != source]
                yield _Dropped(source)
            waiting.append(_End(source, error))
        yield _Encoded(self._encode(waiting))
        yield _Decode(final=True)

    def _encoded_live(
        self, source: int, windows: Iterable[Window | Gap]
    ) -> Iterator[_Encoded | _Dropped | _Decode]:
        """The encoder's side of a live source: each window encoded alone and decoded at once, then a mark."""
        error = None
        try:
            for window in windows:
                items = [] if isinstance(window, Gap) else self._encode([(source, window)])
                yield _Encoded([*items, _Mark(source, window.source_end)])
                yield _Decode(final=True)
        except SambaError as exc:
            error = exc
            yield _Dropped(source)
        yield _Encoded([_End(source, error)])
        yield _Decode(final=True)

    def _encode(self, waiting: list[tuple[int, Window] | _End]) -> list[_Pending | _End]:
        """Encode the waiting windows in one batch; their segments and the source ends, in order."""
        items = [w for w in waiting if not isinstance(w, _End)]
        encoded = iter(self.encode_windows([w for _, w in items], [s for s, _ in items]) if items else [])
        out: list[_Pending | _End] = []
        for item in waiting:
            out.extend([item] if isinstance(item, _End) else next(encoded))
        return out

    def _overdue(self, queue: deque[_Pending | _End]) -> int:
        """How many segments at the queue's front end with sources that have ended and waited long enough
        (``end_wait_seconds`` of later speech queued behind them); 0 when none has."""
        count, seconds = 0, 0.0
        ends: list[tuple[int, float]] = []  # (segments, seconds of speech) queued before each source end
        for item in queue:
            if isinstance(item, _End):
                ends.append((count, seconds))
            elif isinstance(item, _Pending):
                count += 1
                seconds += item.span.length * self.frame_seconds
        waited = [before for before, at in ends if seconds - at >= self.options.end_wait_seconds]
        return max(waited, default=0)

    def _drain(
        self, queue: deque[_Pending | _End | _Mark], counts: dict[int, int], final: bool
    ) -> Iterator[SourceEvent]:
        """Decode full batches (and, when ``final``, the last partial one) from the queue's front; give events."""
        batch_size = self.options.decode.batch_size
        while True:
            while queue and not isinstance(queue[0], _Pending):
                yield self._passed(queue.popleft())
            batch = [p for p in queue if isinstance(p, _Pending)][:batch_size]
            if len(batch) < batch_size and not final:
                batch = batch[: self._overdue(queue)]
            if not batch:
                return
            hyps = dict(zip(map(id, batch), self.decode_batch(batch), strict=True))
            while hyps:
                item = queue.popleft()
                if not isinstance(item, _Pending):
                    yield self._passed(item)
                    continue
                index, hyp = counts.get(item.source, 0), hyps.pop(id(item))
                segments = self.builder.build(index, item.window, item.span, item.encoded.ctc, hyp)
                counts[item.source] = counts.get(item.source, 0) + len(segments)
                for segment in segments:
                    yield SourceEvent(item.source, segment)

    def _passed(self, item: _End | _Mark) -> SourceEvent:
        """The event of a source end or of a live mark at the queue's front."""
        if isinstance(item, _End):
            return SourceEvent(item.source, error=item.error)
        if self.clock is not None:
            self.clock.passed(item.until)
        return SourceEvent(item.source, until=item.until)


class LiveClock:
    """How far a live run is behind its stream, and the decoding that keeps it from falling further behind.

    The stream is taken to arrive in real time from its start (by default, when the run starts reading it).
    When the transcript of the stream up to second ``until`` is out more than LIVE_BEHIND_WINDOWS windows' length
    after ``until`` seconds of the run, decoding switches to the fastest there is (greedy CTC without a language
    model, or greedy attention for a model without a CTC head) and says so once on stderr; it switches back once
    the delay is under one window again. Each window's delay is logged at INFO (``-v``)."""

    def __init__(self, options: ResolvedOptions, ctc_head: bool, began: float | None = None) -> None:
        self.normal = options.decode
        self.fast = fastest_decode(options.decode, ctc_head)
        self.window = options.window.window_seconds
        self.stream_start = began  # when the stream began, if the caller knows
        self.began = 0.0  # set by start()
        self.behind = False  # decoding with ``fast``
        self.warned = False

    def start(self) -> None:
        """The pipeline starts reading the stream: the stream's start, unless the caller gave it."""
        self.began = time.monotonic() if self.stream_start is None else self.stream_start

    @property
    def decoding(self) -> ResolvedDecode:
        return self.fast if self.behind else self.normal

    def passed(self, until: float) -> None:
        delay = time.monotonic() - self.began - until
        logger.info("live: %.1f s of the stream transcribed, %.1f s behind it", until, max(delay, 0.0))
        if not self.behind and delay > LIVE_BEHIND_WINDOWS * self.window and self.fast != self.normal:
            self.behind = True
            if not self.warned:
                self.warned = True
                logger.warning(
                    "live: %.1f s behind the stream; decoding with greedy %s and no language model until it "
                    "has caught up",
                    delay,
                    self.fast.decoder.upper() if self.fast.decoder == "ctc" else "attention",
                )
        elif self.behind and delay < self.window:
            self.behind = False
            logger.info("live: caught up (%.1f s behind); back to the chosen decoding", max(delay, 0.0))


def pipeline_decoder_frames(model: SambaASR, segments: SegmentOptions) -> int:
    """Most encoder frames one segment of the pipeline hands the decoder: the longest segment and both attention
    margins (:func:`samba_cli.decoding.decode.decoder_frames`)."""
    return decoder_frames(model, segments.max_segment_seconds + 2 * segments.attention_margin_seconds)
