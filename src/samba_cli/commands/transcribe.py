"""`samba transcribe INPUT...`: parses the options into the library's option objects and runs a batch.

Everything heavy (torch, the model) is imported inside the command, so that `samba --help` and shell
completion stay fast. Exit status: 0 all inputs done or skipped, 1 any failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from samba_cli.audio import STDIN
from samba_cli.batch import (
    DEFAULT_EXTENSIONS,
    BatchTranscriber,
    Existing,
    PlanError,
    Status,
    Summary,
    discover,
    normalize_extensions,
    plan,
    run_batch,
)
from samba_cli.cues import CueOptions
from samba_cli.errors import OptionError
from samba_cli.lm import LEXICON_FILE, LM_FILE
from samba_cli.progress import make_reporter, package_logging
from samba_cli.writers import WRITERS

if TYPE_CHECKING:
    from samba_cli.pipeline import TranscribeOptions

ALL_FORMATS = "all"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
_CUE_DEFAULTS = CueOptions()


class Decoder(str, enum.Enum):
    auto = "auto"
    attention = "attention"
    ctc = "ctc"


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DType(str, enum.Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


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


def exit_code(summary: Summary) -> int:
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.count(Status.FAILED) else 0


def transcribe_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Media files, folders, glob patterns (quoted), or - for standard input.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            envvar="SAMBA_MODEL",
            help="Hub repo id (owner/name) or local checkpoint folder",
            show_default="the bundled model",
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(help="Branch, tag or commit of a Hub repo", show_default="main"),
    ] = None,
    output_format: Annotated[
        list[str] | None,
        typer.Option(
            "--output-format",
            "-f",
            help=f"{', '.join(WRITERS)} or {ALL_FORMATS}; repeat or comma-separate",
            autocompletion=_complete_formats,
            show_default="txt",
        ),
    ] = None,
    output_dir: Annotated[
        str,
        typer.Option(
            "--output-dir",
            "-o",
            help="Folder for the transcripts, created if needed; - writes one format to stdout",
        ),
    ] = ".",
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", help="Also transcribe the media in subfolders of folder inputs"),
    ] = False,
    ext: Annotated[
        list[str] | None,
        typer.Option(
            help="Extensions of the media picked up in folders and glob matches; repeat or comma-separate",
            show_default="common audio and video types, see docs/cli.md",
        ),
    ] = None,
    skip_existing: Annotated[
        bool | None,
        typer.Option(
            "--skip-existing/--overwrite",
            help="Skip inputs whose outputs exist (writing only missing formats), or replace them",
            show_default="refuse, and fail those inputs",
        ),
    ] = None,
    word_timestamps: Annotated[
        bool,
        typer.Option(
            "--word-timestamps/--no-word-timestamps", help="Align words (json words, subtitle cue timing)"
        ),
    ] = True,
    max_line_width: Annotated[
        int, typer.Option(min=1, help="Subtitle characters per line")
    ] = _CUE_DEFAULTS.max_line_width,
    max_line_count: Annotated[
        int, typer.Option(min=1, help="Subtitle lines per cue")
    ] = _CUE_DEFAULTS.max_line_count,
    max_cue_duration: Annotated[
        float, typer.Option(min=0.1, help="Subtitle cue length, seconds")
    ] = _CUE_DEFAULTS.max_duration,
    beam_size: Annotated[
        int, typer.Option(min=1, help="Beam width (1: greedy; CTC with a language model: 32 when 1)")
    ] = 1,
    lm: Annotated[
        str,
        typer.Option(
            metavar="ARPA|auto|none",
            help="Word n-gram language model of CTC decoding; auto: the model's own (lm.arpa.gz), if it has one",
        ),
    ] = "auto",
    lm_weight: Annotated[
        float | None, typer.Option(help="Language-model weight", show_default="the model's, else 0.5")
    ] = None,
    word_bonus: Annotated[
        float | None,
        typer.Option(help="Score added per word with a language model", show_default="the model's, else 2.0"),
    ] = None,
    oov_penalty: Annotated[
        float | None,
        typer.Option(
            help="Score taken off each word outside the language model's vocabulary",
            show_default="the model's, else 0",
        ),
    ] = None,
    lexicon: Annotated[
        str,
        typer.Option(
            metavar="FILE|auto|none",
            help="Word list accepted beside the language model's vocabulary; auto: the model's own "
            "(lexicon.txt.gz) when its language model is used",
        ),
    ] = "auto",
    lexicon_penalty: Annotated[
        float | None,
        typer.Option(
            help="Score taken off each lexicon word outside the language model's vocabulary",
            show_default="the model's, else 0",
        ),
    ] = None,
    rescore_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="CTC beam search: weight of the attention decoder's score when it reranks the final beams (0: off)",
            show_default="the model's, else 0",
        ),
    ] = None,
    attention_beam: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="CTC beam search with rescoring: width of an attention beam search whose hypotheses join the "
            "final beams as rescoring candidates (0: off)",
            show_default="the model's, else 0",
        ),
    ] = None,
    decoder: Annotated[
        Decoder,
        typer.Option(
            case_sensitive=False,
            help="auto (the model's recommended decoder), attention (Mamba decoder) or ctc (fastest)",
        ),
    ] = Decoder.auto,
    vad: Annotated[
        bool, typer.Option("--vad/--no-vad", help="Transcribe only the speech found by VAD")
    ] = True,
    window_length: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", min=1.0, help="Audio encoded at once; cuts are moved to the quietest point"
        ),
    ] = 120.0,
    device: Annotated[
        Device, typer.Option(case_sensitive=False, help="auto: cuda when available")
    ] = Device.auto,
    dtype: Annotated[
        DType, typer.Option(case_sensitive=False, help="auto: bfloat16 on cuda, float32 on cpu")
    ] = DType.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Segments decoded together")] = 16,
    encoder_batch: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            min=0.0,
            help="Windows of one or several files encoded together, up to this much audio; 0: one at a time",
            show_default="auto: 0 on cpu, 600 on cuda",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for torch", show_default="torch's choice")
    ] = None,
    search_workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Processes running the CTC beam searches of a batch (1: none; 0: one per CPU core, at most 4)",
        ),
    ] = 0,
    local_files_only: Annotated[
        bool, typer.Option("--local-files-only", help="Never download; use the Hugging Face cache only")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail: -v info, -vv debug")
    ] = 0,
) -> None:
    """Transcribe media files, folders, globs or standard input to txt, srt, vtt, json or tsv.

    Writes OUTPUT_DIR/NAME.FORMAT for each input; folder inputs are mirrored under OUTPUT_DIR.

    Progress and the summary go to stderr; stdout carries transcripts only (with -o -).

    Examples:
      samba transcribe talk.mp3 -f srt,vtt
      samba transcribe recordings/ -r -o transcripts --skip-existing
      ffmpeg -i video.mp4 -f mp3 - | samba transcribe - -f srt -o - > subs.srt
    """
    formats = parse_formats(output_format)
    extensions = (
        normalize_extensions([e for value in ext for e in value.split(",")]) if ext else DEFAULT_EXTENSIONS
    )
    if not extensions:
        raise typer.BadParameter("no extension given", param_hint="'--ext'")
    cue_options = CueOptions(
        max_line_width=max_line_width,
        max_line_count=max_line_count,
        max_duration=max_cue_duration,
        min_duration=min(_CUE_DEFAULTS.min_duration, max_cue_duration),
    )
    if STDIN in inputs and sys.stdin.isatty():
        raise typer.BadParameter(
            "standard input is a terminal: pipe media into it, e.g. cat a.mp3 | samba transcribe -"
        )
    existing = {None: Existing.REFUSE, True: Existing.SKIP, False: Existing.OVERWRITE}[skip_existing]
    to_stdout = output_dir == "-"
    try:
        work = plan(
            discover(inputs, recursive, extensions),
            formats,
            None if to_stdout else Path(output_dir),
            existing,
        )
    except PlanError as error:
        raise typer.BadParameter(str(error)) from None

    console = Console(stderr=True)
    reporter = make_reporter(console, quiet=quiet, verbose=verbose > 0)
    with package_logging(console, quiet=quiet, verbosity=verbose):
        try:
            runner = None
            if work.tasks:  # no model is loaded when every input is settled (missing, refused, skipped)
                from samba_cli.api import load_model  # torch
                from samba_cli.ctc import auto_search_workers

                options = _transcribe_options(
                    word_timestamps,
                    beam_size,
                    decoder,
                    batch_size,
                    vad,
                    window_length,
                    encoder_batch,
                    {
                        "lm": None if lm == "none" else lm,
                        "lm_weight": lm_weight,
                        "word_bonus": word_bonus,
                        "oov_penalty": oov_penalty,
                        "lexicon": None if lexicon == "none" else lexicon,
                        "lexicon_penalty": lexicon_penalty,
                        "rescore_weight": rescore_weight,
                        "attention_beam": attention_beam,
                        "search_workers": search_workers or auto_search_workers(),
                    },
                )
                transcriber = load_model(
                    model,
                    revision=revision,
                    device=device.value,
                    dtype=dtype.value,
                    local_files_only=local_files_only,
                    threads=threads,
                )
                if transcriber.resolved.source == "bundled":
                    reporter.note(
                        f"using the bundled model {transcriber.resolved.model_id} "
                        "(choose another with -m or SAMBA_MODEL)"
                    )
                try:
                    runner = BatchTranscriber(transcriber, options, cue_options)
                except OptionError as error:  # an option this model cannot run (ctc without a CTC head, ...)
                    raise typer.BadParameter(str(error), param_hint=f"'{error.option}'") from None
                decode = runner.options.decode
                if decode.lm is not None and lm == "auto":
                    own = (
                        f"{LM_FILE} and lexicon {LEXICON_FILE}"
                        if decode.lexicon and lexicon == "auto"
                        else LM_FILE
                    )
                    reporter.note(f"using the model's language model {own} (turn it off with --lm none)")
            stdout = sys.stdout.buffer if to_stdout else None
            summary = run_batch(work, reporter, runner, stdout=stdout, estimate_duration=not quiet)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if summary.stdout_closed:  # what is left in stdout's buffer cannot be written: drop it quietly at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(exit_code(summary))


def _transcribe_options(
    word_timestamps: bool,
    beam_size: int,
    decoder: Decoder,
    batch_size: int,
    vad: bool,
    window_length: float,
    encoder_batch: float | None,
    ctc_options: dict | None = None,  # DecodeOptions' CTC fields: lm, lm_weight, ..., attention_beam
) -> TranscribeOptions:
    from samba_cli.pipeline import TranscribeOptions  # torch

    try:
        return TranscribeOptions.from_kwargs(
            word_timestamps=word_timestamps,
            beam_size=beam_size,
            decoder=decoder.value,
            batch_size=batch_size,
            vad=vad,
            window_seconds=window_length,
            encoder_batch_seconds=encoder_batch,
            **(ctc_options or {}),
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
