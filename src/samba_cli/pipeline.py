"""The transcription stages as a lazy generator.

samples -> windows -> features -> encoder -> CTC posteriors -> segments -> decoder search -> alignment -> Segments

Windows come one at a time from the windowing stage; the segments of consecutive windows are pooled and decoded in
batches of ``DecodeOptions.batch_size``, and yielded in source order as soon as their batch is done.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from samba_cli.align import word_spans
from samba_cli.features import HOP_LENGTH, SAMPLE_RATE, log_mel
from samba_cli.model import SambaASR
from samba_cli.results import Segment, Word
from samba_cli.search import DecodeOptions, Hypothesis, ctc_greedy, decode_segments
from samba_cli.segments import FrameSpan, SegmentOptions, split_segments
from samba_cli.stepper import StepperFactory
from samba_cli.tokenizer import Tokenizer
from samba_cli.windows import Window, WindowOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscribeOptions:
    window: WindowOptions = field(default_factory=WindowOptions)  # long windows, VAD
    segments: SegmentOptions = field(default_factory=SegmentOptions)  # utterance segments inside a window
    decode: DecodeOptions = field(default_factory=DecodeOptions)  # search
    word_timestamps: bool = True  # align words with the CTC posteriors

    @classmethod
    def from_kwargs(cls, base: TranscribeOptions | None = None, **kwargs) -> TranscribeOptions:
        """Options with fields of any sub-option replaced by name, e.g. ``beam_size=5, vad=False``."""
        base = base or cls()
        groups = {"window": base.window, "segments": base.segments, "decode": base.decode}
        changes: dict[str, dict] = {name: {} for name in groups}
        top = {}
        for key, value in kwargs.items():
            owner = next(
                (g for g, obj in groups.items() if key in {f.name for f in dataclasses.fields(obj)}), None
            )
            if owner is not None:
                changes[owner][key] = value
            elif key == "word_timestamps":
                top[key] = value
            else:
                raise TypeError(f"unknown transcription option {key!r}")
        return cls(**{g: dataclasses.replace(obj, **changes[g]) for g, obj in groups.items()}, **top)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def max_decoder_frames(model: SambaASR, options: TranscribeOptions) -> int:
    """Most encoder frames one segment can hand the decoder (segment + both margins), rounded up to 64."""
    seg = options.segments
    frames = (
        math.ceil((seg.max_segment_seconds + 2 * seg.attention_margin_seconds) / model.config.frame_seconds)
        + 2
    )
    return -(-frames // 64) * 64


@dataclass
class _Pending:
    """A segment waiting for its decoder batch."""

    window: Window
    span: FrameSpan
    states: torch.Tensor  # (S', D) encoder frames of the span plus the attention margin
    ctc: torch.Tensor | None  # (span.length, V + 1) CTC log-posteriors of the span
    offset: int  # frames of margin before span.start inside ``states``


class Pipeline:
    """Runs the model stages over windows. Holds no per-source state besides the segment counter.

    ``decoder="auto"`` means attention here; :class:`samba_cli.api.Transcriber` first resolves it to the
    checkpoint's own default.
    """

    def __init__(
        self,
        model: SambaASR,
        tokenizer: Tokenizer,
        options: TranscribeOptions,
        steppers: StepperFactory | None = None,
    ) -> None:
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
            raise ValueError("decoder='ctc' needs a model with a CTC head")

    @torch.inference_mode()
    def encode_window(self, window: Window) -> list[_Pending]:
        """Features, encoder and CTC posteriors of one window, cut into pending segments."""
        cfg = self.model.config
        feats = log_mel(torch.from_numpy(window.samples).to(self.param.device), cfg.n_mels)
        states, _ = self.model.encode(feats.unsqueeze(0).to(self.param.dtype))
        states = states[0]
        if self.model.ctc_head is None:
            frames = states.shape[0]
            spans = [FrameSpan(0, frames, 0.0)] if frames else []
            ctc = None
        else:
            ctc = torch.log_softmax(self.model.ctc_logits(states).float(), dim=-1)
            spans = split_segments(ctc[:, cfg.blank_id].exp(), self.frame_seconds, self.options.segments)
        margin = round(self.options.segments.attention_margin_seconds / self.frame_seconds)
        pending = []
        for span in spans:
            lo, hi = max(0, span.start - margin), min(states.shape[0], span.end + margin)
            pending.append(
                _Pending(
                    window,
                    span,
                    states[lo:hi],
                    None if ctc is None else ctc[span.start : span.end],
                    span.start - lo,
                )
            )
        return pending

    def decode_batch(self, batch: list[_Pending]) -> list[Hypothesis]:
        cfg = self.model.config
        if self.options.decode.decoder == "ctc":
            return [ctc_greedy(p.ctc, p.span.length, cfg.blank_id) for p in batch]
        lengths = torch.tensor([p.states.shape[0] for p in batch], device=self.param.device)
        padded = torch.nn.utils.rnn.pad_sequence([p.states for p in batch], batch_first=True)
        seconds = [p.span.length * self.frame_seconds for p in batch]
        return decode_segments(self.model, padded, lengths, seconds, self.options.decode, self.steppers)

    def _seconds(self, window: Window, frame: float) -> float:
        """Window frame position (fractional allowed) -> source seconds."""
        sample = min(frame * self.samples_per_frame, window.time_map.num_samples)
        return window.time_map.to_source_seconds(sample / SAMPLE_RATE)

    def to_segment(self, index: int, pending: _Pending, hyp: Hypothesis) -> Segment:
        tokens = list(hyp.tokens)
        span = pending.span
        start, end = self._seconds(pending.window, span.start), self._seconds(pending.window, span.end)
        words: tuple[Word, ...] = ()
        if self.options.word_timestamps and tokens:
            starts = [self.tokenizer.starts_word(t) for t in tokens]
            spans = word_spans(
                tokens, list(hyp.token_logprobs), starts, pending.ctc, self.model.config.blank_id
            )
            words = tuple(
                Word(
                    text=self.tokenizer.decode(list(w.tokens)).strip(),
                    start=self._seconds(pending.window, span.start + w.start),
                    end=self._seconds(pending.window, span.start + w.end),
                    probability=math.exp(w.logprob),
                )
                for w in spans
            )
        avg = sum(hyp.token_logprobs) / len(tokens) if tokens else 0.0
        return Segment(
            id=index,
            start=start,
            end=end,
            text=self.tokenizer.decode(tokens).strip(),
            words=words,
            avg_logprob=avg,
            no_speech_prob=span.no_speech_prob,
        )

    def run(self, windows: Iterable[Window]) -> Iterator[Segment]:
        """Windows in source order -> non-empty Segments in source order."""
        batch_size = self.options.decode.batch_size
        queue: list[_Pending] = []
        index = 0
        for window in windows:
            queue.extend(self.encode_window(window))
            while len(queue) >= batch_size:
                batch, queue = queue[:batch_size], queue[batch_size:]
                for segment in self._finish(batch, index):
                    index += 1
                    yield segment
        while queue:
            batch, queue = queue[:batch_size], queue[batch_size:]
            for segment in self._finish(batch, index):
                index += 1
                yield segment

    def _finish(self, batch: list[_Pending], first_index: int) -> Iterator[Segment]:
        index = first_index
        for pending, hyp in zip(batch, self.decode_batch(batch), strict=True):
            segment = self.to_segment(index, pending, hyp)
            if segment.text:
                index += 1
                yield segment
