"""The transcription stages as a lazy generator.

samples -> windows -> features -> encoder -> CTC posteriors -> segments -> decoder search -> alignment -> Segments

Windows come one at a time from the windowing stage of one or several sources. Consecutive windows, of one
source or of the next ones, are encoded together in one padded batch of at most ``encoder_batch_seconds`` of
audio; the segments they hold are pooled and decoded in batches of ``DecodeOptions.batch_size``, across windows
and sources, and given in source order as soon as their batch is done.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from samba_cli.align import word_spans
from samba_cli.ctc import ctc_decode
from samba_cli.errors import OptionError, SambaError
from samba_cli.features import HOP_LENGTH, SAMPLE_RATE, log_mel
from samba_cli.model import SambaASR
from samba_cli.results import Segment, Word
from samba_cli.search import DecodeOptions, Hypothesis, decode_segments
from samba_cli.segments import FrameSpan, SegmentOptions, split_at_gaps, split_segments
from samba_cli.stepper import StepperFactory
from samba_cli.threads import read_ahead, torch_threads_here
from samba_cli.tokenizer import Tokenizer
from samba_cli.windows import Window, WindowOptions

logger = logging.getLogger(__name__)

# seconds of padded audio per encoder batch on CUDA when encoder_batch_seconds is auto
CUDA_ENCODER_BATCH = 600.0


@dataclass(frozen=True)
class TranscribeOptions:
    window: WindowOptions = field(default_factory=WindowOptions)  # long windows, VAD
    segments: SegmentOptions = field(default_factory=SegmentOptions)  # utterance segments inside a window
    decode: DecodeOptions = field(default_factory=DecodeOptions)  # search
    word_timestamps: bool = True  # align words with the CTC posteriors
    # Consecutive windows (of one or several sources) are encoded in one padded batch of at most this many
    # seconds; 0: one window at a time; None: auto (0 on CPU, where batching measured no faster; CUDA_ENCODER_BATCH
    # on CUDA, where encoder calls are launch-bound), resolved by Transcriber.resolve_options.
    encoder_batch_seconds: float | None = None
    # A source that has ended waits for its decoder batch to fill with the next sources' segments while they
    # hold less than this many seconds of speech; then its segments are decoded in a partial batch, so that
    # it can be written long before the batch would be full.
    end_wait_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.encoder_batch_seconds is not None and not self.encoder_batch_seconds >= 0:
            raise ValueError(f"encoder_batch_seconds must be >= 0, got {self.encoder_batch_seconds}")
        if not self.end_wait_seconds >= 0:
            raise ValueError(f"end_wait_seconds must be >= 0, got {self.end_wait_seconds}")

    @classmethod
    def from_kwargs(cls, base: TranscribeOptions | None = None, **kwargs) -> TranscribeOptions:
        """Options with fields of any option group, nested ones included, replaced by name, e.g. ``beam_size=5,
        vad=False, lm=None``: the flat keywords of ``Transcriber.transcribe``. Every field name in the tree is
        unique (a test checks it), so a keyword names one field (:func:`option_owners`)."""
        owners = option_owners()
        unknown = [key for key in kwargs if key not in owners]
        if unknown:
            raise TypeError(f"unknown transcription option {unknown[0]!r}")
        return _replaced(base or cls(), {(*owners[key], key): value for key, value in kwargs.items()})

    def to_dict(self) -> dict:
        """Plain JSON values by group (window, segments, decode); a nested group's fields (decode.ctc) stand in
        their parent group under their own names, the flat keywords of :meth:`from_kwargs`."""
        out = dataclasses.asdict(self)
        groups = out["decode"].items()
        out["decode"] = {
            k: v for key, value in groups for k, v in (value if key == "ctc" else {key: value}).items()
        }
        return out


def _replaced(options, changes: dict[tuple[str, ...], object]):
    """``options`` (a dataclass) with the fields at the paths of ``changes`` (group, ..., field) replaced; each
    group is rebuilt once, so that its checks see all its new values together."""
    fields: dict[str, object] = {}
    groups: dict[str, dict[tuple[str, ...], object]] = {}
    for (name, *rest), value in changes.items():
        if rest:
            groups.setdefault(name, {})[tuple(rest)] = value
        else:
            fields[name] = value
    fields |= {name: _replaced(getattr(options, name), inner) for name, inner in groups.items()}
    return dataclasses.replace(options, **fields)


def join_across_cut(first: Segment, second: Segment, pause: float, longest: float) -> Segment | None:
    """``first`` and ``second`` (consecutive segments of one source) as one segment with ``first``'s id, when
    less than ``pause`` seconds of silence separate them and together they last at most ``longest`` seconds;
    else None. The silence is measured between their words (the last word's end, the next one's start) when both
    have word times, as within a window, where segments are only split at such pauses: so this joins what a
    window cut split."""
    end = first.words[-1].end if first.words and second.words else first.end
    start = second.words[0].start if first.words and second.words else second.start
    if start - end >= pause or second.end - first.start > longest:
        return None
    first_seconds, second_seconds = first.end - first.start, second.end - second.start
    weights = (max(1, len(first.words)), max(1, len(second.words)))
    return Segment(
        id=first.id,
        start=first.start,
        end=second.end,
        text=f"{first.text} {second.text}",
        words=first.words + second.words,
        avg_logprob=(first.avg_logprob * weights[0] + second.avg_logprob * weights[1]) / sum(weights),
        no_speech_prob=(first.no_speech_prob * first_seconds + second.no_speech_prob * second_seconds)
        / max(first_seconds + second_seconds, 1e-9),
    )


def option_owners(owner: type | None = None, path: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Each flat keyword of :meth:`TranscribeOptions.from_kwargs` -> the path of option groups holding it, e.g.
    ``beam_size`` -> ("decode",), ``lm`` -> ("decode", "ctc"), ``word_timestamps`` -> (). A field whose type is
    a dataclass is a group: its fields are keywords, not the group itself."""
    owner = owner or TranscribeOptions
    hints = typing.get_type_hints(owner)
    owners: dict[str, tuple[str, ...]] = {}
    for member in dataclasses.fields(owner):
        kind = hints[member.name]
        if dataclasses.is_dataclass(kind):
            owners |= {k: v for k, v in option_owners(kind, (*path, member.name)).items() if k not in owners}
        else:
            owners.setdefault(member.name, path)
    return owners


def max_decoder_frames(model: SambaASR, options: TranscribeOptions) -> int:
    """Most encoder frames one segment can hand the decoder (segment + both margins), rounded up to 64."""
    seg = options.segments
    frames = (
        math.ceil((seg.max_segment_seconds + 2 * seg.attention_margin_seconds) / model.config.frame_seconds)
        + 2
    )
    return -(-frames // 64) * 64


class _Flush:
    def __repr__(self) -> str:
        return "FLUSH"


# in Pipeline.run_sources' sources: finish the queued work without waiting for the next source
FLUSH = _Flush()


@dataclass(frozen=True)
class SourceEvent:
    """One result of :meth:`Pipeline.run_sources`. Events come in source order: a source's segments, then its end."""

    source: int  # position of the source among the inputs
    segment: Segment | None = None  # the source's next non-empty segment; None: the source has ended
    error: SambaError | None = None  # at the end: why the source failed (segments given for it are void)

    @property
    def done(self) -> bool:
        """The source ended without error: all its segments have been given."""
        return self.segment is None and self.error is None


@dataclass
class _Pending:
    """A segment waiting for its decoder batch."""

    source: int
    window: Window
    span: FrameSpan
    states: torch.Tensor  # (S', D) encoder frames of the span plus the attention margin
    ctc: torch.Tensor | None  # (span.length, V + 1) CTC log-posteriors of the span
    offset: int  # frames of margin before span.start inside ``states``


@dataclass(frozen=True)
class _End:
    """The end of a source, queued behind its last window and segment."""

    source: int
    error: SambaError | None


@dataclass(frozen=True)
class _Encoded:
    # an encoder batch's segments and the source ends among its windows, in order
    items: list[_Pending | _End]


@dataclass(frozen=True)
class _Dropped:
    source: int  # a source whose media failed: its segments not decoded yet are dropped


@dataclass(frozen=True)
class _Decode:
    final: bool  # decode the full batches queued (final: all that is queued)


# audio the encoder thread may encode ahead of the decoding: enough windows for a few decoder batches (each of
# its events is an encoder batch or a decode mark; at least two encoder batches are ahead)
ENCODED_AHEAD_SECONDS = 120.0


def encoder_threads(device: torch.device) -> int:
    """Torch threads of the thread that reads and encodes windows ahead of the decoding: half of the threads
    torch may use here (at most the usable cores); 0, no such thread, when that is one (one core, or
    ``--threads 1``) or the model runs on a GPU, and the windows are encoded in turn. (A GPU encodes fast, and
    CUDA work from another thread while the decoding captures a CUDA graph breaks the capture: seen on an H200.)"""
    return torch_threads_here() // 2 if device.type == "cpu" else 0


class Pipeline:
    """Runs the model stages over windows. Holds no per-source state besides the segment counter.

    The decoding options must be resolved (:meth:`samba_cli.search.DecodeOptions.resolve`, which
    :meth:`samba_cli.api.Transcriber.resolve_options` calls with the model's folder and metadata).
    """

    def __init__(
        self,
        model: SambaASR,
        tokenizer: Tokenizer,
        options: TranscribeOptions,
        steppers: StepperFactory | None = None,
    ) -> None:
        options.decode.require_resolved()
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.steppers = steppers or StepperFactory(
            model, max_decoder_frames(model, options), options.decode.cuda_graphs
        )
        cfg = model.config
        self.frame_seconds = cfg.frame_seconds
        self.samples_per_frame = cfg.subsampling * HOP_LENGTH
        self.param = next(model.parameters())
        if options.decode.decoder == "ctc" and model.ctc_head is None:
            raise OptionError("decoder 'ctc' needs a model with a CTC head", "--decoder")

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
                pending.append(
                    _Pending(
                        0 if sources is None else sources[row],
                        window,
                        span,
                        window_states[lo:hi],
                        None if window_ctc is None else window_ctc[span.start : span.end],
                        span.start - lo,
                    )
                )
            out.append(pending)
        return out

    def decode_batch(self, batch: list[_Pending]) -> list[Hypothesis]:
        if self.options.decode.decoder == "ctc":
            segments = [(p.ctc, p.span.length, p.states) for p in batch]
            return ctc_decode(self.model, segments, self.options.decode, self.tokenizer.pieces, self.steppers)
        lengths = torch.tensor([p.states.shape[0] for p in batch], device=self.param.device)
        padded = torch.nn.utils.rnn.pad_sequence([p.states for p in batch], batch_first=True)
        seconds = [p.span.length * self.frame_seconds for p in batch]
        return decode_segments(self.model, padded, lengths, seconds, self.options.decode, self.steppers)

    def _seconds(self, window: Window, frame: float) -> float:
        """Window frame position (fractional allowed) -> source seconds."""
        sample = min(frame * self.samples_per_frame, window.time_map.num_samples)
        return window.time_map.to_source_seconds(sample / SAMPLE_RATE)

    def to_segments(self, index: int, pending: _Pending, hyp: Hypothesis) -> list[Segment]:
        """The hypothesis of one decoded span as Segments numbered from ``index``: one, or several when the
        aligned words leave a pause of ``break_pause_seconds`` or more. Segments without a letter or digit
        (punctuation alone) are left out."""
        tokens = list(hyp.tokens)
        span = pending.span
        if not tokens:
            return []
        pieces = self.tokenizer.pieces
        spoken = [any(c.isalnum() for c in pieces[t]) for t in tokens]
        spans = []
        if self.options.word_timestamps or pending.ctc is not None:
            starts = self.tokenizer.word_starts(tokens)
            blank = self.model.config.blank_id
            spans = word_spans(
                tokens,
                list(hyp.token_logprobs),
                starts,
                pending.ctc,
                blank,
                spoken=spoken,
                seconds=lambda frame: self._seconds(pending.window, span.start + frame),
                split_seconds=self.options.segments.break_pause_seconds,
            )
            # a bare word-start piece before another word start spells nothing
            spans = [w for w in spans if self.tokenizer.decode(list(w.tokens)).strip()]
        # word times in source seconds: VAD may have cut most of a pause out of the window
        times = [
            (
                self._seconds(pending.window, span.start + w.start),
                self._seconds(pending.window, span.start + w.end),
            )
            for w in spans
        ]
        runs = [(0, len(spans))]
        if pending.ctc is not None and spans:
            runs = split_at_gaps(times, self.options.segments.break_pause_seconds)
        segments = []
        for k, (a, b) in enumerate(runs):
            first = span.start if k == 0 else span.start + round(spans[a].start)
            last = span.end if k + 1 == len(runs) else span.start + math.ceil(spans[b - 1].end)
            part_tokens = [t for w in spans[a:b] for t in w.tokens] if len(runs) > 1 else tokens
            part_logprobs = (
                [w.logprob for w in spans[a:b] for _ in w.tokens]
                if len(runs) > 1
                else list(hyp.token_logprobs)
            )
            text = self.tokenizer.decode(part_tokens).strip()
            if not any(c.isalnum() for c in text):
                continue
            words: tuple[Word, ...] = ()
            if self.options.word_timestamps:
                words = tuple(
                    Word(
                        text=self.tokenizer.decode(list(w.tokens)).strip(),
                        start=start,
                        end=end,
                        probability=math.exp(w.logprob),
                    )
                    for w, (start, end) in zip(spans[a:b], times[a:b], strict=True)
                )
            no_speech = span.no_speech_prob
            if len(runs) > 1:
                blank = pending.ctc[first - span.start : last - span.start, self.model.config.blank_id]
                no_speech = float(blank.exp().mean())
            segments.append(
                Segment(
                    id=index + len(segments),
                    start=self._seconds(pending.window, first),
                    end=self._seconds(pending.window, last),
                    text=text,
                    words=words,
                    avg_logprob=sum(part_logprobs) / len(part_logprobs),
                    no_speech_prob=no_speech,
                )
            )
        return segments

    def run(self, windows: Iterable[Window]) -> Iterator[Segment]:
        """Windows of one source in order -> its non-empty Segments in order. A SambaError raised while the
        windows are read is raised again here."""
        for event in self.run_sources([windows]):
            if event.error is not None:
                raise event.error
            if event.segment is not None:
                yield event.segment

    def run_sources(self, sources: Iterable[Iterable[Window] | _Flush]) -> Iterator[SourceEvent]:
        """Several sources, each an iterable of its windows, read one after the other -> events in source order.

        A segment followed by the next one of its source after less than half ``break_pause_seconds`` of silence
        between their words (what a window cut inside speech leaves) is given joined with it, unless together
        they would last longer than ``max_segment_seconds``; segment ids count the segments given.
        """
        held: dict[int, Segment] = {}  # per source, its last segment, until the next one or the source's end
        given: dict[int, int] = {}  # per source, segments numbered so far
        options = self.options.segments
        for event in self._decoded_sources(sources):
            previous = held.pop(event.source, None)
            if event.segment is None:  # the source's end
                if previous is not None:
                    yield SourceEvent(event.source, previous)
                yield event
                continue
            joined = None
            if previous is not None:
                # the words at a cut carry up to a VAD pad of silence each (and the first word of a window starts
                # early): half the break pause tells a cut inside speech from one in a pause
                joined = join_across_cut(
                    previous, event.segment, options.break_pause_seconds / 2, options.max_segment_seconds
                )
            if joined is not None:
                held[event.source] = joined
                continue
            if previous is not None:
                yield SourceEvent(event.source, previous)
            number = given.get(event.source, 0)
            given[event.source] = number + 1
            held[event.source] = dataclasses.replace(event.segment, id=number)

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
        if not threads:
            events = self._encoded_sources(sources)
        else:  # the windows of the next sources are read and encoded in a thread while these decode
            batch = self.options.encoder_batch_seconds or self.options.window.window_seconds
            events = read_ahead(
                self._encoded_sources(sources, torch_threads=threads),
                2 * max(2, math.ceil(ENCODED_AHEAD_SECONDS / batch)),
            )
        queue: deque[_Pending | _End] = deque()  # segments for the decoder, with source ends in order
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
            else:
                count += 1
                seconds += item.span.length * self.frame_seconds
        waited = [before for before, at in ends if seconds - at >= self.options.end_wait_seconds]
        return max(waited, default=0)

    def _drain(
        self, queue: deque[_Pending | _End], counts: dict[int, int], final: bool
    ) -> Iterator[SourceEvent]:
        """Decode full batches (and, when ``final``, the last partial one) from the queue's front; give events."""
        batch_size = self.options.decode.batch_size
        while True:
            while queue and isinstance(queue[0], _End):
                end = queue.popleft()
                yield SourceEvent(end.source, error=end.error)
            batch = [p for p in queue if isinstance(p, _Pending)][:batch_size]
            if len(batch) < batch_size and not final:
                batch = batch[: self._overdue(queue)]
            if not batch:
                return
            hyps = dict(zip(map(id, batch), self.decode_batch(batch), strict=True))
            while hyps:
                item = queue.popleft()
                if isinstance(item, _End):
                    yield SourceEvent(item.source, error=item.error)
                    continue
                segments = self.to_segments(counts.get(item.source, 0), item, hyps.pop(id(item)))
                counts[item.source] = counts.get(item.source, 0) + len(segments)
                for segment in segments:
                    yield SourceEvent(item.source, segment)
