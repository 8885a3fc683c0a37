"""`samba cluster transcribe INPUT...`: the batch mode of `samba transcribe`, spread over a Ray cluster.

A command group of its own rather than a flag of `samba transcribe`: it takes URLs as well as paths, its outputs
may be a URL, it always resumes (skips inputs whose outputs exist), writes a Parquet index, and has the cluster's
options (address, actors, resources per actor, files per batch), none of which mean anything to one process.
Exit status as `samba transcribe`: 0 all inputs done or skipped, 1 any failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console

from samba_cli.commands.options import (
    MediaArgs,
    ModelArgs,
    PipelineArgs,
    SearchArgs,
    option,
    transcribe_options,
    with_groups,
)
from samba_cli.commands.transcribe import exit_code
from samba_cli.distributed import require
from samba_cli.options import ClusterOptions
from samba_cli.planning import PlanError
from samba_cli.progress import make_reporter, package_logging

app = typer.Typer(
    help="Transcribe on a Ray cluster, from and to local folders or object storage.", no_args_is_help=True
)


@dataclass(frozen=True)
class ClusterArgs:
    """Where and how wide the cluster runs; defaults are ClusterOptions'."""

    address: str | None = option(
        field=(ClusterOptions, "address"),
        help="Ray cluster to join (auto, ray://HEAD:10001)",
        show_default="RAY_ADDRESS, else local",
    )
    actors: int | None = option(
        field=(ClusterOptions, "actors"),
        min=1,
        help="Actors (model copies)",
        show_default="cluster GPUs or CPUs / per actor",
    )
    cpus_per_actor: float = option(
        field=(ClusterOptions, "cpus_per_actor"), min=0.0, help="CPUs reserved per actor"
    )
    gpus_per_actor: float = option(
        field=(ClusterOptions, "gpus_per_actor"), min=0.0, help="GPUs per actor; 0.5: two per GPU"
    )
    files_per_batch: int = option(
        field=(ClusterOptions, "files_per_batch"),
        min=1,
        help="Input files per actor call, transcribed together",
    )


@app.command("transcribe")
@with_groups
def transcribe_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Media files, folders, glob patterns (quoted), or URLs of objects, prefixes or globs (s3://...)",
            show_default=False,
        ),
    ],
    *,
    output_dir: Annotated[
        str,
        typer.Option("--output-dir", "-o", help="Folder or URL prefix for the transcripts and the index"),
    ] = ".",
    media: MediaArgs,
    index: Annotated[
        str | None,
        typer.Option(
            help="Parquet index of every input and its status", show_default="OUTPUT_DIR/index.parquet"
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace existing outputs (default: skip those inputs, resume)"),
    ] = False,
    model: ModelArgs,
    search: SearchArgs,
    pipeline: PipelineArgs,
    cluster: ClusterArgs,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v: also Ray's progress")] = 0,
) -> None:
    """Transcribe files, folders, globs or object-store URLs on a Ray cluster.

    Writes OUTPUT_DIR/NAME.FORMAT for each input (folders and prefixes mirrored, as samba transcribe) and an
    index of every input. Inputs whose outputs exist are skipped, so a rerun resumes. A model folder must be
    present on every node.

    Examples:
      samba cluster transcribe recordings/ -r -o transcripts -f srt,json
      samba cluster transcribe 's3://archive/audio/**/*.mp3' -o s3://archive/text --address auto --gpus-per-actor 1
    """
    require()
    from samba_cli.distributed import storage

    formats, extensions = media.formats(), media.extensions()
    if output_dir == "-":
        raise typer.BadParameter("the cluster writes files: give a folder or URL", param_hint="'-o'")
    target = storage.Target.of(output_dir)
    try:
        work = storage.plan(storage.discover(inputs, media.recursive, extensions), formats, target, overwrite)
    except PlanError as error:
        raise typer.BadParameter(str(error)) from None

    from samba_cli.cues import CueOptions
    from samba_cli.distributed.driver import run
    from samba_cli.distributed.worker import WorkerSpec

    options = transcribe_options(search, pipeline)
    spec = WorkerSpec(
        model=model.model,
        revision=model.revision,
        device=model.device,
        dtype=model.dtype.value,
        threads=max(1, int(cluster.cpus_per_actor)),
        local_files_only=model.local_files_only,
        options=options,
        cue_options=CueOptions(),
    )
    cluster_options = ClusterOptions(
        address=cluster.address,
        actors=cluster.actors,
        cpus_per_actor=cluster.cpus_per_actor,
        gpus_per_actor=cluster.gpus_per_actor,
        files_per_batch=cluster.files_per_batch,
        log_level=logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING,
    )
    console = Console(stderr=True)
    reporter = make_reporter(console, quiet=quiet, verbose=verbose > 0)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = verbose > 0  # else samba's own progress only
    with package_logging(console, quiet=quiet, verbosity=verbose):
        summary = run(
            work, spec, cluster_options, reporter, index or target.child(storage.INDEX_NAME), target
        )
    raise typer.Exit(exit_code(summary))
