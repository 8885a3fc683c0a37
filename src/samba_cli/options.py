"""Every option of transcription, its default, and the one place where the options are resolved.

The option groups (frozen dataclasses) say what a caller asks for; "auto" and None values are unset. :func:`resolve`
fills every unset value exactly once per run, for one model on one device, and returns a distinct type,
:class:`ResolvedOptions`, which is what the pipeline and the searches take: they never see an unset value and never
resolve again. This module imports no torch, so the command line reads its defaults here for ``--help``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from samba_cli.errors import OptionError

# -- defaults ------------------------------------------------------------------------------------------------------

DECODERS = ("auto", "attention", "ctc")
DEFAULT_DECODER = (
    "attention"  # what decoder="auto" becomes for a model whose metadata names no default_decoder
)
LM_BEAM_SIZE = 64  # the CTC beam with a language model when beam_size is 1 (docs/benchmarks.md: beam width)
# What an unset (None) field of CTCOptions becomes when the model's metadata gives no value
DEFAULT_LM_WEIGHT = 0.5  # language-model weight
DEFAULT_WORD_BONUS = 2.0  # word bonus
DEFAULT_OOV_PENALTY = (
    0.0  # score taken off each word outside the LM's vocabulary (0: its <unk> probability only)
)
DEFAULT_LEXICON_PENALTY = 0.0  # score taken off each lexicon word outside the LM's vocabulary
DEFAULT_RESCORE_WEIGHT = 0.0  # attention rescoring of the final beams: off
DEFAULT_ATTENTION_BEAM = 0  # attention beam search adding rescoring candidates: off
# seconds of padded audio per encoder batch on CUDA when encoder_batch_seconds is auto (0 on the CPU)
CUDA_ENCODER_BATCH = 600.0
MAX_MARGIN_SECONDS = 10.0  # an unset WindowOptions.margin_seconds: this, ...
MARGIN_SHARE = 0.25  # ... or this share of window_seconds when less (a short window keeps its cuts apart)
MIN_WINDOW_SECONDS = 0.032  # one VAD frame (samba_cli.vad.FRAME_MS): the shortest window
DEVICE_NAME = r"auto|cpu|cuda(?::(\d+))?"  # the device names accepted


# -- what a caller asks for ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowOptions:
    # nominal window length: the bundled model, trained on single utterances, transcribes long recordings best in
    # 4-6 s windows (docs/windowing.md); a model trained on long audio may want more
    window_seconds: float = 5.0
    # each cut may move this far either way to reach the quietest point; None: MAX_MARGIN_SECONDS, at most
    # MARGIN_SHARE of window_seconds (see margin)
    margin_seconds: float | None = None
    vad: bool = True  # keep only speech regions (silero-vad, energy fallback); off: keep every sample
    vad_threshold: float = 0.5  # speech starts at this probability and ends below it minus 0.15
    min_speech_ms: int = 250  # speech regions shorter than this are dropped
    min_silence_ms: int = 500  # silences shorter than this do not split a speech region
    speech_pad_ms: int = 200  # kept on each side of a speech region; also the half-width of the cut score
    # silence put before a window that opens at the source's first sample, so that speech from sample 0 keeps
    # its first sounds (docs/bench/first-word)
    lead_in_ms: int = 160

    def __post_init__(self) -> None:
        if not self.window_seconds >= MIN_WINDOW_SECONDS:
            raise ValueError(f"window_seconds must be >= {MIN_WINDOW_SECONDS} s, got {self.window_seconds}")
        if not 0 <= self.margin < self.window_seconds:
            raise ValueError(
                f"margin_seconds must be in [0, window_seconds={self.window_seconds}), got {self.margin_seconds}"
            )
        if not 0 < self.vad_threshold < 1:
            raise ValueError(f"vad_threshold must be in (0, 1), got {self.vad_threshold}")
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms", "lead_in_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def margin(self) -> float:
        """``margin_seconds``, or when unset the rule: MAX_MARGIN_SECONDS, at most MARGIN_SHARE of the window."""
        if self.margin_seconds is not None:
            return self.margin_seconds
        return min(MAX_MARGIN_SECONDS, self.window_seconds * MARGIN_SHARE)


@dataclass(frozen=True)
class SegmentOptions:
    max_segment_seconds: float = 20.0  # longest segment handed to the decoder
    min_pause_seconds: float = 0.32  # a run of blank-dominated frames at least this long is a pause
    blank_threshold: float = 0.9  # a frame whose blank probability exceeds this counts as silence
    min_speech_seconds: float = 0.12  # drop segments with less speech than this (all blank noise)
    attention_margin_seconds: float = 0.24  # extra encoder frames on each side that cross-attention may see
    # A decoded span holds speech runs packed across pauses (for context and batching); its transcript is given
    # as several segments, split where two aligned words are at least this far apart.
    break_pause_seconds: float = 0.8


@dataclass(frozen=True)
class CTCOptions:
    """CTC decoding's language model, lexicon and attention rescoring (DecodeOptions.ctc). None and "auto" are
    unset: :func:`resolve` fills them from the model folder and its metadata, else the DEFAULT_* constants."""

    # Word n-gram language model (ARPA file) of CTC decoding. "auto": the model folder's lm.arpa.gz, if it has
    # one; None: none.
    lm: str | None = "auto"
    # weight of its ln probabilities; None: the model's value, else DEFAULT_LM_WEIGHT
    lm_weight: float | None = None
    # score added per word with a language model; None: the model's value, else DEFAULT_WORD_BONUS
    word_bonus: float | None = None
    # score taken off each word outside the language model's vocabulary, on top of its <unk> probability;
    # None: the model's value, else DEFAULT_OOV_PENALTY
    oov_penalty: float | None = None
    # Word list (one word per line) of spellings accepted beside the LM's vocabulary. "auto": the model folder's
    # lexicon.txt.gz when its language model is used; None: none.
    lexicon: str | None = "auto"
    # score taken off each lexicon word outside the LM's vocabulary, instead of the OOV penalty; None: the
    # model's value, else DEFAULT_LEXICON_PENALTY
    lexicon_penalty: float | None = None
    # CTC beam search: weight of the attention decoder's log-probability when it reranks the final beams
    # (attention rescoring); None: the model's value, else DEFAULT_RESCORE_WEIGHT
    rescore_weight: float | None = None
    # CTC beam search with attention rescoring: beam width of an attention-decoder beam search whose finished
    # hypotheses join the final CTC beams as rescoring candidates (scored by CTC, the language model and the
    # attention decoder alike); None: the model's value, else DEFAULT_ATTENTION_BEAM
    attention_beam: int | None = None

    def __post_init__(self) -> None:
        for name in ("lm_weight", "word_bonus", "oov_penalty", "lexicon_penalty", "rescore_weight"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        for name in ("lm_weight", "rescore_weight"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.attention_beam is not None and self.attention_beam < 0:
            raise ValueError(f"attention_beam must be >= 0, got {self.attention_beam}")


@dataclass(frozen=True)
class DecodeOptions:
    """How segments are decoded; "auto" values are unset until :func:`resolve` fills them."""

    decoder: str = "auto"  # "attention" (Mamba decoder), "ctc" (CTC, fastest) or "auto" (the model's choice)
    beam_size: int = 1  # 1: greedy (CTC with a language model: LM_BEAM_SIZE); else beam search
    ctc: CTCOptions = field(default_factory=CTCOptions)  # CTC decoding: language model, lexicon, rescoring
    length_penalty: float = 1.0  # beam scores are divided by (length ** length_penalty)
    max_tokens_per_second: float = 15.0  # cap on hypothesis length relative to the segment's audio
    max_repeats: int = 4  # an n-gram (n <= 4) repeated this many times in a row ends the hypothesis
    batch_size: int = 16  # segments decoded together
    # processes that run the CTC prefix searches of a batch (spawned once, kept; see decoding.pool); 1: this one;
    # 0: auto (one per core, at most 4; on a GPU every core but one)
    search_workers: int = 1
    cuda_graphs: bool = True  # on CUDA, replay the decode step from CUDA graphs (one per batch-size bucket)

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        if self.decoder == "attention" and (
            self.ctc.lm not in (None, "auto") or self.ctc.lexicon not in (None, "auto")
        ):
            raise ValueError("a language model or lexicon is used by CTC decoding only: use the ctc decoder")
        if self.search_workers < 0:
            raise ValueError(f"search_workers must be at least 0 (auto), got {self.search_workers}")


@dataclass(frozen=True)
class TranscribeOptions:
    window: WindowOptions = field(default_factory=WindowOptions)  # long windows, VAD
    segments: SegmentOptions = field(default_factory=SegmentOptions)  # utterance segments inside a window
    decode: DecodeOptions = field(default_factory=DecodeOptions)  # search
    word_timestamps: bool = True  # align words with the CTC posteriors
    # Consecutive windows (of one or several sources) are encoded in one padded batch of at most this many
    # seconds; 0: one window at a time; None: auto (0 on the CPU, where batching measured no faster;
    # CUDA_ENCODER_BATCH on CUDA, where encoder calls are launch-bound).
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
        return _flat_groups(self)


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide a Ray job runs (`samba cluster transcribe`)."""

    address: str | None = (
        None  # Ray cluster to join ("auto", "ray://head:10001"); None: RAY_ADDRESS, else local
    )
    actors: int | None = (
        None  # actor pool size; None: the cluster's GPUs (or CPUs) divided by what one actor takes
    )
    cpus_per_actor: float = 1.0  # CPUs reserved per actor (and torch threads when on CPU)
    gpus_per_actor: float = 0.0  # GPUs per actor; 0.5 puts two actors on each GPU
    files_per_batch: int = 16  # input files per map_batches call, transcribed together by one actor
    log_level: int = (
        logging.WARNING
    )  # Ray's own log lines on the driver (start-up, Ray Data's plan and progress)


# -- what the pipeline and the searches take -----------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedCTC:
    """CTCOptions with every value chosen (by :func:`resolve`): what CTC decoding reads as it is."""

    lm: str | None  # the language model's path; None: none
    lm_weight: float
    word_bonus: float
    oov_penalty: float
    lexicon: str | None  # the lexicon's path; None: none
    lexicon_penalty: float
    rescore_weight: float  # 0 unless CTC decoding runs a beam search
    attention_beam: int  # 0 without rescoring


@dataclass(frozen=True)
class ResolvedDecode:
    """DecodeOptions with every value chosen (by :func:`resolve`): field for field the same, none unset."""

    decoder: Literal["attention", "ctc"]
    beam_size: int  # CTC with a language model: LM_BEAM_SIZE for 1
    ctc: ResolvedCTC
    length_penalty: float
    max_tokens_per_second: float
    max_repeats: int
    batch_size: int
    search_workers: int  # at least 1
    cuda_graphs: bool


@dataclass(frozen=True)
class ResolvedOptions:
    """TranscribeOptions with every value chosen, for one model on one device (by :func:`resolve`)."""

    window: WindowOptions  # margin_seconds set
    segments: SegmentOptions
    decode: ResolvedDecode
    word_timestamps: bool
    encoder_batch_seconds: float
    end_wait_seconds: float

    def to_dict(self) -> dict:
        """Plain JSON values by group (window, segments, decode); a nested group's fields (decode.ctc) stand in
        their parent group under their own names, the flat keywords of :meth:`TranscribeOptions.from_kwargs`."""
        return _flat_groups(self)


@dataclass(frozen=True)
class ModelFacts:
    """What resolving options needs to know of a model."""

    folder: Path | None = None  # its folder: its own language model and lexicon
    metadata: Mapping = field(default_factory=dict)  # config.json's metadata: its decoder, tuned weights
    ctc_head: bool = True  # whether it has a CTC head (CTC decoding, segmenting at pauses, word times)


def recommended_decoder(metadata: Mapping) -> str:
    """The decoder a model's config.json ``metadata`` recommends (``default_decoder``), else DEFAULT_DECODER;
    ValueError for a value that is no decoder."""
    decoder = metadata.get("default_decoder", DEFAULT_DECODER)
    if decoder not in ("attention", "ctc"):
        raise ValueError(f"metadata.default_decoder must be attention or ctc, got {decoder!r}")
    return decoder


def resolve(
    options: TranscribeOptions | ResolvedOptions, model: ModelFacts, device: str = "cpu"
) -> ResolvedOptions:
    """The options with every choice made for ``model`` on ``device`` (its type: "cpu", "cuda"): the decoding
    options as :func:`resolve_decode` makes them, ``encoder_batch_seconds=None`` by the device's value (0 on the
    CPU, CUDA_ENCODER_BATCH on CUDA) and an unset window margin by WindowOptions' rule. Resolved options are
    given back as they are: their choices are made once."""
    if isinstance(options, ResolvedOptions):
        return options
    encoder_batch = options.encoder_batch_seconds
    if encoder_batch is None:
        encoder_batch = CUDA_ENCODER_BATCH if device == "cuda" else 0.0
    return ResolvedOptions(
        window=dataclasses.replace(options.window, margin_seconds=options.window.margin),
        segments=options.segments,
        decode=resolve_decode(options.decode, model, device),
        word_timestamps=options.word_timestamps,
        encoder_batch_seconds=encoder_batch,
        end_wait_seconds=options.end_wait_seconds,
    )


def resolve_decode(
    options: DecodeOptions, model: ModelFacts | None = None, device: str = "cpu"
) -> ResolvedDecode:
    """The decoding options with every choice made (the part of :func:`resolve` that `samba eval` uses alone):

    - ``decoder="auto"``: the metadata's ``default_decoder``, else DEFAULT_DECODER; "ctc" for a model without a
      CTC head is an OptionError (a ValueError);
    - ``ctc.lm="auto"``: the folder's lm.arpa.gz when decoding is CTC and the folder has one, else None (none);
    - ``ctc.lexicon="auto"``: the folder's lexicon.txt.gz when the folder's own language model is used, else
      None; a lexicon without a language model is an OptionError;
    - ``ctc.lm_weight``, ``word_bonus``, ``oov_penalty``, ``lexicon_penalty`` None: the metadata's ``lm``
      entry when the language model is the folder's own, else DEFAULT_*;
    - ``ctc.rescore_weight``, ``ctc.attention_beam`` None: the metadata's values, else DEFAULT_*;
    - ``search_workers=0``: one per usable core, at most 4 on the CPU, all but one on CUDA.

    ``model`` None: a model without folder or metadata, with a CTC head.

    Then what the search will do is written out: for CTC decoding with a language model, ``beam_size`` 1
    becomes LM_BEAM_SIZE (the CTC beam); attention rescoring (``rescore_weight``) is 0 unless CTC decoding
    runs a beam search, and ``attention_beam`` 0 without rescoring. The language model and lexicon are
    loaded (and cached) here, so that a bad file fails before any input is read."""
    from samba_cli.decoding.lm import LEXICON_FILE, LM_FILE, load_lexicon, load_lm
    from samba_cli.decoding.pool import auto_search_workers

    model = model or ModelFacts()
    metadata = model.metadata
    decoder = recommended_decoder(metadata) if options.decoder == "auto" else options.decoder
    dataclasses.replace(options, decoder=decoder)  # ValueError: a language model with the attention decoder
    if decoder == "ctc" and not model.ctc_head:
        raise OptionError("decoder 'ctc' needs a model with a CTC head", "--decoder")
    given = options.ctc
    own_lm, own_lexicon = (
        (None, None)
        if model.folder is None
        else (Path(model.folder) / LM_FILE, Path(model.folder) / LEXICON_FILE)
    )
    lm = given.lm
    if lm == "auto":
        lm = str(own_lm) if decoder == "ctc" and own_lm is not None and own_lm.is_file() else None
    if lm is None and given.lexicon not in (None, "auto"):
        raise OptionError("a lexicon is used with a language model only", "--lexicon")
    if lm is not None:
        load_lm(lm)  # a bad language model fails here (one-line SambaError), before any input is read
    own = lm is not None and lm == str(own_lm)
    lexicon = given.lexicon
    if lexicon == "auto":
        lexicon = str(own_lexicon) if own and own_lexicon.is_file() else None
    if lexicon is not None:
        load_lexicon(lexicon)  # likewise
    tuned = (metadata.get("lm") or {}) if own else {}

    def pick(name: str, source: Mapping, default: float) -> float:
        value = getattr(given, name)
        if value is None:
            value = source.get(name)
        return default if value is None else value

    beam_size = options.beam_size
    if decoder == "ctc" and lm is not None and beam_size == 1:
        beam_size = LM_BEAM_SIZE
    searching = decoder == "ctc" and beam_size > 1  # CTC beam search: what rescoring reranks
    rescore = float(pick("rescore_weight", metadata, DEFAULT_RESCORE_WEIGHT)) if searching else 0.0
    ctc = ResolvedCTC(
        lm=lm,
        lm_weight=pick("lm_weight", tuned, DEFAULT_LM_WEIGHT),
        word_bonus=pick("word_bonus", tuned, DEFAULT_WORD_BONUS),
        oov_penalty=pick("oov_penalty", tuned, DEFAULT_OOV_PENALTY),
        lexicon=lexicon,
        lexicon_penalty=pick("lexicon_penalty", tuned, DEFAULT_LEXICON_PENALTY),
        rescore_weight=rescore,
        attention_beam=int(pick("attention_beam", metadata, DEFAULT_ATTENTION_BEAM)) if rescore else 0,
    )
    workers = options.search_workers or auto_search_workers(gpu=device == "cuda")
    return ResolvedDecode(
        decoder=typing.cast(Literal["attention", "ctc"], decoder),
        beam_size=beam_size,
        ctc=ctc,
        length_penalty=options.length_penalty,
        max_tokens_per_second=options.max_tokens_per_second,
        max_repeats=options.max_repeats,
        batch_size=options.batch_size,
        search_workers=workers,
        cuda_graphs=options.cuda_graphs,
    )


def fastest_decode(options: ResolvedDecode, ctc_head: bool = True) -> ResolvedDecode:
    """The fastest decoding there is with the same limits: greedy CTC without language model or rescoring (greedy
    attention for a model without a CTC head). What a live run falls back to when it cannot keep up."""
    ctc = ResolvedCTC(
        lm=None,
        lm_weight=DEFAULT_LM_WEIGHT,
        word_bonus=DEFAULT_WORD_BONUS,
        oov_penalty=DEFAULT_OOV_PENALTY,
        lexicon=None,
        lexicon_penalty=DEFAULT_LEXICON_PENALTY,
        rescore_weight=0.0,
        attention_beam=0,
    )
    decoder: Literal["attention", "ctc"] = "ctc" if ctc_head else "attention"
    return dataclasses.replace(options, decoder=decoder, beam_size=1, ctc=ctc)


# -- reflection over the option tree -------------------------------------------------------------------------------


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


def _flat_groups(options: TranscribeOptions | ResolvedOptions) -> dict:
    out = dataclasses.asdict(options)
    groups = out["decode"].items()
    out["decode"] = {
        k: v for key, value in groups for k, v in (value if key == "ctc" else {key: value}).items()
    }
    return out
