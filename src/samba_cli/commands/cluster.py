"""`samba cluster transcribe INPUT...`: the batch mode of `samba transcribe`, spread over a Ray cluster.

A command group of its own rather than a flag of `samba transcribe`: it takes URLs as well as paths, its outputs
may be a URL, it always resumes (skips inputs whose outputs exist), writes a Parquet index, and has the cluster's
options (address, actors, resources per actor, files per batch), none of which mean anything to one process.
Exit status as `samba transcribe`: 0 all inputs done or skipped, 1 any failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

from samba_cli.batch import DEFAULT_EXTENSIONS, PlanError, normalize_extensions
from samba_cli.commands.transcribe import Decoder, Device, DType, exit_code, parse_formats
from samba_cli.distributed import require
from samba_cli.progress import make_reporter, package_logging
from samba_cli.writers import WRITERS

app = typer.Typer(
    help="Transcribe on a Ray cluster, from and to local folders or object storage.", no_args_is_help=True
)

_DEFAULT_FILES_PER_BATCH = 16  # ClusterOptions.batch_size, repeated here so that --help needs no ray import


@app.command("transcribe")
def transcribe_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Media files, folders, glob patterns (quoted), or URLs of objects, prefixes or globs (s3://...)",
            show_default=False,
        ),
    ],
    output_dir: Annotated[
        str,
        typer.Option("--output-dir", "-o", help="Folder or URL prefix for the transcripts and the index"),
    ] = ".",
    output_format: Annotated[
        list[str] | None,
        typer.Option(
            "--output-format",
            "-f",
            help=f"{', '.join(WRITERS)} or all; repeat or comma-separate",
            show_default="txt",
        ),
    ] = None,
    index: Annotated[
        str | None,
        typer.Option(
            help="Parquet index of every input and its status", show_default="OUTPUT_DIR/index.parquet"
        ),
    ] = None,
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", help="Also transcribe the media below folder and prefix inputs"),
    ] = False,
    ext: Annotated[
        list[str] | None,
        typer.Option(
            help="Extensions picked up in folders, prefixes and globs", show_default="as transcribe"
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace existing outputs (default: skip those inputs, resume)"),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            envvar="SAMBA_MODEL",
            help="Hub repo id or checkpoint folder (present on every node)",
            show_default="the bundled model",
        ),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit of a Hub repo")] = None,
    decoder: Annotated[
        Decoder, typer.Option(case_sensitive=False, help="auto, attention or ctc, as in transcribe")
    ] = Decoder.auto,
    beam_size: Annotated[int, typer.Option(min=1, help="Beam width (1: greedy)")] = 1,
    vad: Annotated[
        bool, typer.Option("--vad/--no-vad", help="Transcribe only the speech found by VAD")
    ] = True,
    word_timestamps: Annotated[
        bool, typer.Option("--word-timestamps/--no-word-timestamps", help="Align words")
    ] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Segments decoded together")] = 16,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join (auto, ray://HEAD:10001)", show_default="RAY_ADDRESS, else local"
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(min=1, help="Actors (model copies)", show_default="cluster GPUs or CPUs / per actor"),
    ] = None,
    cpus_per_actor: Annotated[float, typer.Option(min=0.0, help="CPUs reserved per actor")] = 1.0,
    gpus_per_actor: Annotated[float, typer.Option(min=0.0, help="GPUs per actor; 0.5: two per GPU")] = 0.0,
    files_per_batch: Annotated[
        int, typer.Option(min=1, help="Input files per actor call, transcribed together")
    ] = _DEFAULT_FILES_PER_BATCH,
    device: Annotated[Device, typer.Option(case_sensitive=False, help="On each actor")] = Device.auto,
    dtype: Annotated[DType, typer.Option(case_sensitive=False)] = DType.auto,
    local_files_only: Annotated[
        bool, typer.Option("--local-files-only", help="Never download the model")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v: also Ray's progress")] = 0,
) -> None:
    """Transcribe files, folders, globs or object-store URLs on a Ray cluster.

    Writes OUTPUT_DIR/NAME.FORMAT for each input (folders and prefixes mirrored, as samba transcribe) and an
    index of every input. Inputs whose outputs exist are skipped, so a rerun resumes.

    Examples:
      samba cluster transcribe recordings/ -r -o transcripts -f srt,json
      samba cluster transcribe 's3://archive/audio/**/*.mp3' -o s3://archive/text --address auto --gpus-per-actor 1
    """
    require()
    from samba_cli.distributed import storage

    formats = parse_formats(output_format)
    extensions = (
        normalize_extensions([e for value in ext for e in value.split(",")]) if ext else DEFAULT_EXTENSIONS
    )
    if not extensions:
        raise typer.BadParameter("no extension given", param_hint="'--ext'")
    if output_dir == "-":
        raise typer.BadParameter("the cluster writes files: give a folder or URL", param_hint="'-o'")
    target = storage.Target.of(output_dir)
    try:
        work = storage.plan(storage.discover(inputs, recursive, extensions), formats, target, overwrite)
    except PlanError as error:
        raise typer.BadParameter(str(error)) from None

    from samba_cli.cues import CueOptions
    from samba_cli.distributed.driver import ClusterOptions, run
    from samba_cli.distributed.worker import WorkerSpec
    from samba_cli.pipeline import TranscribeOptions  # torch

    options = TranscribeOptions.from_kwargs(
        decoder=decoder.value,
        beam_size=beam_size,
        vad=vad,
        word_timestamps=word_timestamps,
        batch_size=batch_size,
    )
    spec = WorkerSpec(
        model=model,
        revision=revision,
        device=device.value,
        dtype=dtype.value,
        threads=max(1, int(cpus_per_actor)),
        local_files_only=local_files_only,
        options=options,
        cue_options=CueOptions(),
    )
    cluster = ClusterOptions(
        address,
        actors,
        cpus_per_actor,
        gpus_per_actor,
        files_per_batch,
        log_level=logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING,
    )
    console = Console(stderr=True)
    reporter = make_reporter(console, quiet=quiet, verbose=verbose > 0)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = verbose > 0  # else samba's own progress only
    with package_logging(console, quiet=quiet, verbosity=verbose):
        summary = run(work, spec, cluster, reporter, index or target.child(storage.INDEX_NAME), target)
    raise typer.Exit(exit_code(summary))
