"""Command-line options shared by `samba transcribe`, `samba eval` and `samba cluster transcribe`, declared once.

An option group is a frozen dataclass whose fields are options (:func:`option`); a command takes the group as one
parameter (``search: SearchArgs``) and :func:`with_groups` expands it into the group's options for Typer, then
hands the command the parsed group. An option that sets a field of a library option dataclass
(``DecodeOptions.beam_size``, ``WindowOptions.vad``, ...) names that field: its default is the field's default.
The library's option classes live in samba_cli.options (and samba_cli.cues), which import no torch, so that
`samba transcribe --help` and shell completion stay fast.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from samba_cli.cues import CueOptions
from samba_cli.options import (
    CUDA_ENCODER_BATCH,
    DEFAULT_ATTENTION_BEAM,
    DEFAULT_LEXICON_PENALTY,
    DEFAULT_LM_WEIGHT,
    DEFAULT_OOV_PENALTY,
    DEFAULT_RESCORE_WEIGHT,
    DEFAULT_WORD_BONUS,
    DEVICE_NAME,
    LM_BEAM_SIZE,
    CTCOptions,
    DecodeOptions,
    TranscribeOptions,
    WindowOptions,
)
from samba_cli.planning import DEFAULT_EXTENSIONS, normalize_extensions
from samba_cli.writers import WRITERS


def option(
    *flags: str,
    field: tuple[type, str] | None = None,
    default: Any = None,
    help: str | None = None,
    **settings: Any,
) -> Any:
    """A group field declaring one option. ``field`` (class, field name): the library dataclass field the option
    sets, whose default the option takes; without it, ``default`` is the option's own (an option the library does
    not have, or whose value the CLI resolves)."""
    return dataclasses.field(
        metadata={"flags": flags, "field": field, "default": default, "help": help, "settings": settings}
    )


def option_default(spec: dataclasses.Field) -> Any:
    """The default of the option declared by the group field ``spec``."""
    meta = spec.metadata
    if meta["field"] is None:
        return meta["default"]
    owner, name = meta["field"]
    (member,) = [f for f in dataclasses.fields(owner) if f.name == name]
    if member.default is dataclasses.MISSING:
        raise LookupError(f"{owner.__name__}.{name}: no plain default for the command line to show")
    return member.default


def _parameter(spec: dataclasses.Field, kind: type) -> inspect.Parameter:
    meta = spec.metadata
    help = meta["help"]
    default = option_default(spec)
    choices = [
        t for t in (typing.get_args(kind) or (kind,)) if isinstance(t, type) and issubclass(t, enum.Enum)
    ]
    if choices and default is not None:  # an enum option's default: the member, for its help and its value
        default = choices[0](default)
    settings = dict(meta["settings"])
    if float in (typing.get_args(kind) or (kind,)):
        settings["callback"] = finite
    info = typer.Option(*meta["flags"], help=help, **settings)
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info]
    )


def finite(value: Any) -> Any:
    """An option callback refusing nan and inf (parsed as numbers: "nan", "inf", "-inf"): every float option of
    the command line takes finite numbers only, within the range its help shows."""
    for number in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(number, float) and not math.isfinite(number):
            raise typer.BadParameter(f"{number} is not a finite number")
    return value


def with_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with each parameter annotated by an option group replaced by the group's options for Typer;
    the command is called with the group built from their values."""
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, type] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        group = parameter.annotation
        if dataclasses.is_dataclass(group) and isinstance(group, type):
            groups[parameter.name] = group
            hints = typing.get_type_hints(group)
            parameters += [_parameter(spec, hints[spec.name]) for spec in dataclasses.fields(group)]
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def expanded(**values: Any) -> Any:
        for name, group in groups.items():
            values[name] = group(**{spec.name: values.pop(spec.name) for spec in dataclasses.fields(group)})
        return command(**values)

    expanded.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    expanded.__annotations__ = {p.name: p.annotation for p in parameters}
    return expanded


# -- choices -------------------------------------------------------------------------------------------------------


class Decoder(str, enum.Enum):
    auto = "auto"
    attention = "attention"
    ctc = "ctc"


class DType(str, enum.Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"
    int8 = "int8"


def check_device(value: str) -> str:
    """A usage error unless ``value`` is auto, cpu, cuda or cuda:N (whether CUDA is there is checked on use)."""
    if not re.fullmatch(DEVICE_NAME, value):
        raise typer.BadParameter(f"{value!r} is not auto, cpu, cuda or cuda:N")
    return value


_DEVICE = {"metavar": "auto|cpu|cuda|cuda:N", "help": "auto: cuda when available", "callback": check_device}


def device_parameter() -> Any:
    """``--device`` of a command outside the groups (default style: ``device: str = device_parameter()``)."""
    return typer.Option("auto", **_DEVICE)


def usage_error(error: Exception) -> typer.Exit:
    """Exit status 2 (usage) after ``error`` as one line, as for a device the machine does not have."""
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


def _none_or(value: str) -> str | None:
    return None if value == "none" else value


# -- groups --------------------------------------------------------------------------------------------------------


ALL_FORMATS = "all"


def _complete_formats(incomplete: str) -> list[str]:
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in (*WRITERS, ALL_FORMATS) if name.startswith(last)]


def parse_formats(values: list[str] | None) -> tuple[str, ...]:
    """``["srt,vtt", "json"]`` -> ``("srt", "vtt", "json")``; ``all`` -> every format; default ``("txt",)``."""
    names = [name.strip().lower() for value in values or ["txt"] for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in WRITERS and name != ALL_FORMATS]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown format {', '.join(map(repr, unknown))}; choose from {', '.join(WRITERS)} or {ALL_FORMATS}",
            param_hint="'-f' / '--output-format'",
        )
    return tuple(WRITERS) if ALL_FORMATS in names else tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class MediaArgs:
    """Which media folder inputs give, and the formats written: `transcribe` and `cluster transcribe`."""

    output_format: list[str] | None = option(
        "--output-format",
        "-f",
        help=f"{', '.join(WRITERS)} or {ALL_FORMATS}; repeat or comma-separate",
        autocompletion=_complete_formats,
        show_default="txt",
    )
    recursive: bool = option(
        "--recursive",
        "-r",
        default=False,
        help="Also transcribe the media in subfolders of folder inputs (and below URL prefixes, on a cluster)",
    )
    ext: list[str] | None = option(
        help="Extensions of the media picked up in folders and glob matches; repeat or comma-separate",
        show_default="common audio and video types, see docs/cli.md",
    )

    def formats(self) -> tuple[str, ...]:
        return parse_formats(self.output_format)

    def extensions(self) -> frozenset[str]:
        if not self.ext:
            return DEFAULT_EXTENSIONS
        extensions = normalize_extensions([e for value in self.ext for e in value.split(",")])
        if not extensions:
            raise typer.BadParameter("no extension given", param_hint="'--ext'")
        return extensions


@dataclass(frozen=True)
class SearchArgs:
    """The search: every command that decodes."""

    decoder: Decoder = option(
        field=(DecodeOptions, "decoder"),
        case_sensitive=False,
        help="auto (the model's recommended decoder), attention (the Mamba decoder alone: the bundled model's "
        "attention decoder is trained to rescore CTC hypotheses and may repeat phrases when it decodes alone) "
        "or ctc (fastest)",
    )
    beam_size: int = option(
        field=(DecodeOptions, "beam_size"),
        min=1,
        help=f"Beam width (1: greedy; CTC with a language model: {LM_BEAM_SIZE} when 1)",
    )


def _models_or(field: str, fallback: float, help: str, **settings: Any) -> Any:
    """A CTC option whose unset value (None) means the model's metadata value, else the library's ``fallback``
    (options.DEFAULT_<FIELD>), as its help shows."""
    shown = "0" if fallback == 0 else str(fallback)
    return option(field=(CTCOptions, field), help=help, show_default=f"the model's, else {shown}", **settings)


@dataclass(frozen=True)
class CTCArgs:
    """CTC decoding with a language model, lexicon and attention rescoring: `transcribe` and `eval`."""

    lm: str = option(
        field=(CTCOptions, "lm"),
        metavar="ARPA|auto|none",
        help="Word n-gram language model of CTC decoding; auto: the model's own (lm.arpa.gz), if it has one",
    )
    lm_weight: float | None = _models_or("lm_weight", DEFAULT_LM_WEIGHT, "Language-model weight", min=0.0)
    word_bonus: float | None = _models_or(
        "word_bonus", DEFAULT_WORD_BONUS, "Score added per word with a language model"
    )
    oov_penalty: float | None = _models_or(
        "oov_penalty",
        DEFAULT_OOV_PENALTY,
        "Score taken off each word outside the language model's vocabulary",
    )
    lexicon: str = option(
        field=(CTCOptions, "lexicon"),
        metavar="FILE|auto|none",
        help="Word list accepted beside the language model's vocabulary; auto: the model's own "
        "(lexicon.txt.gz) when its language model is used",
    )
    lexicon_penalty: float | None = _models_or(
        "lexicon_penalty",
        DEFAULT_LEXICON_PENALTY,
        "Score taken off each lexicon word outside the language model's vocabulary (instead of the OOV penalty)",
    )
    rescore_weight: float | None = _models_or(
        "rescore_weight",
        DEFAULT_RESCORE_WEIGHT,
        "CTC beam search: weight of the attention decoder's score when it reranks the final beams (0: off)",
        min=0.0,
    )
    attention_beam: int | None = _models_or(
        "attention_beam",
        DEFAULT_ATTENTION_BEAM,
        "CTC beam search with rescoring: width of an attention beam search whose hypotheses join the final "
        "beams as rescoring candidates (0: off)",
        min=0,
    )
    # 0 (auto) here, resolved with the device by samba_cli.options.resolve; the library's default is 1 (no pool)
    search_workers: int = option(
        default=0,
        min=0,
        help="Processes running the CTC beam searches of a batch (1: none; 0: one per CPU core, at most 4)",
    )


@dataclass(frozen=True)
class PipelineArgs:
    """The transcription pipeline: `transcribe` and `cluster transcribe`."""

    vad: bool = option(
        "--vad/--no-vad", field=(WindowOptions, "vad"), help="Transcribe only the speech found by VAD"
    )
    word_timestamps: bool = option(
        "--word-timestamps/--no-word-timestamps",
        field=(TranscribeOptions, "word_timestamps"),
        help="Align words (json words, subtitle cue timing)",
    )
    batch_size: int = option(field=(DecodeOptions, "batch_size"), min=1, help="Segments decoded together")


@dataclass(frozen=True)
class WindowArgs:
    """Long windows and how many are encoded together: `transcribe`."""

    window_seconds: float = option(
        field=(WindowOptions, "window_seconds"),
        metavar="SECONDS",
        min=1.0,
        help="Audio encoded at once; cuts are moved to the quietest point",
    )
    encoder_batch_seconds: float | None = option(
        field=(TranscribeOptions, "encoder_batch_seconds"),
        metavar="SECONDS",
        min=0.0,
        help="Windows of one or several files encoded together, up to this much audio; 0: one at a time",
        show_default=f"auto: 0 on cpu, {CUDA_ENCODER_BATCH:g} on cuda",
    )
    # the spellings before the library's names were taken, kept for scripts that use them
    window_length: float | None = option("--window-length", min=1.0, hidden=True)
    encoder_batch: float | None = option("--encoder-batch", min=0.0, hidden=True)

    def window(self, vad: bool) -> WindowOptions:
        seconds = self.window_seconds if self.window_length is None else self.window_length
        return WindowOptions(vad=vad, window_seconds=seconds)

    def encoder_batch_or_auto(self) -> float | None:
        return self.encoder_batch_seconds if self.encoder_batch is None else self.encoder_batch


@dataclass(frozen=True)
class CueArgs:
    """Subtitle cues: `transcribe`."""

    max_line_width: int = option(
        field=(CueOptions, "max_line_width"), min=1, help="Subtitle characters per line"
    )
    max_line_count: int = option(field=(CueOptions, "max_line_count"), min=1, help="Subtitle lines per cue")
    max_cue_duration: float = option(
        field=(CueOptions, "max_duration"), min=0.1, help="Subtitle cue length, seconds"
    )

    def options(self) -> CueOptions:
        shortest = CueOptions().min_duration
        return CueOptions(
            max_line_width=self.max_line_width,
            max_line_count=self.max_line_count,
            max_duration=self.max_cue_duration,
            min_duration=min(shortest, self.max_cue_duration),
        )


@dataclass(frozen=True)
class ModelArgs:
    """Which model, where it runs: `transcribe` and `cluster transcribe`."""

    model: str | None = option(
        "--model",
        "-m",
        envvar="SAMBA_MODEL",
        help="Hub repo id (owner/name) or local checkpoint folder",
        show_default="the bundled model",
    )
    revision: str | None = option(help="Branch, tag or commit of a Hub repo", show_default="main")
    device: str = option(default="auto", **_DEVICE)
    dtype: DType = option(
        default="auto",
        case_sensitive=False,
        help="auto: bfloat16 on cuda, float32 on cpu; int8: float32 with int8 linear layers (cpu)",
    )
    local_files_only: bool = option(
        "--local-files-only", default=False, help="Never download; use the Hugging Face cache only"
    )


# -- library options from the groups, built explicitly -------------------------------------------------------------


def decode_options(
    search: SearchArgs, ctc: CTCArgs | None = None, batch_size: int | None = None
) -> DecodeOptions:
    """The decoding options the command line asks for (unset fields keep DecodeOptions' defaults)."""
    given: dict[str, Any] = {"decoder": search.decoder.value, "beam_size": search.beam_size}
    if batch_size is not None:
        given["batch_size"] = batch_size
    if ctc is not None:
        given["ctc"] = CTCOptions(
            lm=_none_or(ctc.lm),
            lm_weight=ctc.lm_weight,
            word_bonus=ctc.word_bonus,
            oov_penalty=ctc.oov_penalty,
            lexicon=_none_or(ctc.lexicon),
            lexicon_penalty=ctc.lexicon_penalty,
            rescore_weight=ctc.rescore_weight,
            attention_beam=ctc.attention_beam,
        )
        given["search_workers"] = ctc.search_workers
    return DecodeOptions(**given)


def transcribe_options(
    search: SearchArgs,
    pipeline: PipelineArgs,
    ctc: CTCArgs | None = None,
    window: WindowArgs | None = None,
) -> TranscribeOptions:
    """The transcription options the command line asks for: a usage error for values the library refuses."""
    try:
        return TranscribeOptions(
            window=WindowOptions(vad=pipeline.vad) if window is None else window.window(pipeline.vad),
            decode=decode_options(search, ctc, pipeline.batch_size),
            word_timestamps=pipeline.word_timestamps,
            encoder_batch_seconds=None if window is None else window.encoder_batch_or_auto(),
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
