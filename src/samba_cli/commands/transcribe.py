"""`samba transcribe INPUT...`: parses the options into the library's option objects and runs a batch.

Everything heavy (torch, the model) is imported inside the command, so that `samba --help` and shell
completion stay fast. Exit status: 0 all inputs done or skipped, 1 any failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from samba_cli.audio import STDIN
from samba_cli.batch import BatchTranscriber, Summary, run_batch
from samba_cli.commands.options import (
    CTCArgs,
    CueArgs,
    MediaArgs,
    ModelArgs,
    PipelineArgs,
    SearchArgs,
    WindowArgs,
    transcribe_options,
    usage_error,
    with_groups,
)
from samba_cli.decoding.lm import LEXICON_FILE, LM_FILE
from samba_cli.errors import BackendError, OptionError
from samba_cli.live import run_live
from samba_cli.planning import (
    Existing,
    PlanError,
    Status,
    discover,
    plan,
)
from samba_cli.progress import make_reporter, package_logging

STARTED = time.monotonic()  # about when this process started: a live source piped in began then
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def exit_code(summary: Summary) -> int:
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.count(Status.FAILED) else 0


@with_groups
def transcribe_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Media files, folders, glob patterns (quoted), or - for standard input.",
            show_default=False,
        ),
    ],
    *,
    model: ModelArgs,
    media: MediaArgs,
    output_dir: Annotated[
        str,
        typer.Option(
            "--output-dir",
            "-o",
            help="Folder for the transcripts, created if needed; - writes one format to stdout",
        ),
    ] = ".",
    skip_existing: Annotated[
        bool | None,
        typer.Option(
            "--skip-existing/--overwrite",
            help="Skip inputs whose outputs exist (writing only missing formats), or replace them",
            show_default="refuse, and fail those inputs",
        ),
    ] = None,
    search: SearchArgs,
    ctc: CTCArgs,
    pipeline: PipelineArgs,
    window: WindowArgs,
    cues: CueArgs,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Write each segment as soon as it is final, reading the input as it arrives (a stream, a pipe, "
            "a capture device through ffmpeg); one input; jsonl instead of json",
        ),
    ] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for torch", show_default="torch's choice")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail: -v info, -vv debug")
    ] = 0,
) -> None:
    """Transcribe media files, folders, globs or standard input to txt, srt, vtt, json, jsonl or tsv.

    Writes OUTPUT_DIR/NAME.FORMAT for each input; folder inputs are mirrored under OUTPUT_DIR.

    Progress and the summary go to stderr; stdout carries transcripts only (with -o -).

    Examples:
      samba transcribe talk.mp3 -f srt,vtt
      samba transcribe recordings/ -r -o transcripts --skip-existing
      ffmpeg -i video.mp4 -f mp3 - | samba transcribe - -f srt -o - > subs.srt
      ffmpeg -re -i talk.mp3 -f mp3 - | samba transcribe - --live -f srt -o -
    """
    formats, extensions = media.formats(), media.extensions()
    cue_options = cues.options()
    if STDIN in inputs and sys.stdin.isatty():
        raise typer.BadParameter(
            "standard input is a terminal: pipe media into it, e.g. cat a.mp3 | samba transcribe -"
        )
    existing = {None: Existing.REFUSE, True: Existing.SKIP, False: Existing.OVERWRITE}[skip_existing]
    to_stdout = output_dir == "-"
    try:
        work = plan(
            discover(inputs, media.recursive, extensions),
            formats,
            None if to_stdout else Path(output_dir),
            existing,
        )
    except PlanError as error:
        raise typer.BadParameter(str(error)) from None
    if live:
        if "json" in formats:
            raise typer.BadParameter(
                "json is one document and cannot be written live: use jsonl (one segment per line)",
                param_hint="'-f' / '--output-format'",
            )
        if len(work.tasks) + len(work.settled) > 1:
            raise typer.BadParameter("--live transcribes one input (a stream, a pipe, a device or a file)")

    console = Console(stderr=True)
    reporter = make_reporter(console, quiet=quiet, verbose=verbose > 0)
    with package_logging(console, quiet=quiet, verbosity=verbose):
        try:
            runner = None
            if work.tasks:  # no model is loaded when every input is settled (missing, refused, skipped)
                from samba_cli.api import load_model  # torch

                options = transcribe_options(search, pipeline, ctc, window)
                try:
                    transcriber = load_model(
                        model.model,
                        revision=model.revision,
                        device=model.device,
                        dtype=model.dtype.value,
                        local_files_only=model.local_files_only,
                        threads=threads,
                    )
                except BackendError as error:  # --device cuda (or cuda:N) where there is no such GPU
                    raise usage_error(error) from None
                if transcriber.resolved.source == "bundled":
                    reporter.note(
                        f"using the bundled model {transcriber.resolved.model_id} "
                        "(choose another with -m or SAMBA_MODEL)"
                    )
                try:
                    runner = BatchTranscriber(transcriber, options, cue_options)
                except OptionError as error:  # an option this model cannot run (ctc without a CTC head, ...)
                    raise typer.BadParameter(str(error), param_hint=f"'{error.option}'") from None
                resolved = runner.options.decode.ctc
                if resolved.lm is not None and ctc.lm == "auto":
                    own = (
                        f"{LM_FILE} and lexicon {LEXICON_FILE}"
                        if resolved.lexicon and ctc.lexicon == "auto"
                        else LM_FILE
                    )
                    reporter.note(f"using the model's language model {own} (turn it off with --lm none)")
            stdout = sys.stdout.buffer if to_stdout else None
            if live and runner is not None:
                # the source began with this process (a pipe fills while the model loads)
                summary = run_live(
                    work.tasks[0], transcriber, runner.options, cue_options, reporter, stdout, STARTED
                )
            else:
                summary = run_batch(work, reporter, runner, stdout=stdout, estimate_duration=not quiet)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if summary.stdout_closed:  # what is left in stdout's buffer cannot be written: drop it quietly at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(exit_code(summary))
