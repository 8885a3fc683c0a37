"""The distributed job: planned inputs -> a Ray dataset -> ``map_batches`` on an actor pool -> outcomes and index.

Ray Data schedules the batches on a fixed pool of :class:`~samba_cli.distributed.worker.TranscribeBatch` actors
(``compute=ActorPoolStrategy(size=n)``, Ray >= 2.51, where ``concurrency=`` became deprecated). An actor that dies
is restarted and its batch retried by Ray (Ray Data's actor defaults: ``max_restarts=-1``, ``max_task_retries=-1``);
since transcripts are written whole and the index keeps one row per input, a retried batch loses and duplicates
nothing. The driver only plans, streams the result rows for progress, and writes the index last.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from samba_cli.batch import Reporter, Summary
from samba_cli.distributed.stderr_filter import drop_ray_noise
from samba_cli.distributed.storage import Target, is_url, write_index
from samba_cli.distributed.worker import TranscribeBatch, WorkerSpec
from samba_cli.errors import SambaError
from samba_cli.options import ClusterOptions
from samba_cli.planning import Outcome, Plan, Status

logger = logging.getLogger(__name__)


class ClusterError(SambaError):
    """The Ray job itself failed (the actors could not load the model, the cluster went away, ...)."""


def connect(cluster: ClusterOptions) -> bool:
    """Join (or start) a Ray cluster unless this process already has one; True when this call started it."""
    logging.getLogger("ray.data").setLevel(cluster.log_level)
    # the one warning that says Ray's progress bars are off, when samba shows its own; and the stack trace Ray Data
    # logs for a failed job, which samba reports in one line (ClusterError) unless verbose
    logging.getLogger("ray.data._internal.progress").setLevel(max(cluster.log_level, logging.ERROR))
    quiet_failure = logging.CRITICAL if cluster.log_level > logging.INFO else cluster.log_level
    logging.getLogger("ray.data.exceptions").setLevel(quiet_failure)
    if ray.is_initialized():
        return False
    if cluster.address is None and not os.environ.get("RAY_ADDRESS"):
        # A local cluster: its workers run at this process's priority, as samba transcribe does. Ray's default
        # (nice 15, to keep its own daemons responsive) starves them on a machine busy with anything else.
        os.environ.setdefault("RAY_worker_niceness", "0")
    # the actors' own output (a traceback when the model cannot load) stays in Ray's logs unless verbose: the
    # driver reports each input's error from its row, and a failed job in one line
    verbose = cluster.log_level <= logging.INFO
    if not verbose:
        # Ray's note about itself on every run, not about the job: token authentication is on
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    ray.init(
        address=cluster.address,
        logging_level=cluster.log_level,
        configure_logging=True,
        log_to_driver=verbose,
    )
    return True


def pool_size(cluster: ClusterOptions, batches: int) -> int:
    """The actor pool: ``cluster.actors``, else as many as the cluster's resources hold; never more than there
    are batches."""
    if cluster.actors is not None:
        wanted = cluster.actors
    else:
        resources = ray.cluster_resources()
        if cluster.gpus_per_actor > 0:
            wanted = int(resources.get("GPU", 0) // cluster.gpus_per_actor)
        else:
            wanted = int(resources.get("CPU", 1) // cluster.cpus_per_actor)
    return max(1, min(wanted, batches))


def transcribe_dataset(
    dataset: ray.data.Dataset,
    spec: WorkerSpec,
    cluster: ClusterOptions,
    actors: int,
    worker: type[TranscribeBatch] = TranscribeBatch,
) -> ray.data.Dataset:
    """``dataset`` (columns ``path`` and optionally ``bytes``, ``outputs``) mapped by ``actors`` actors of
    ``worker`` (a subclass may add columns or checks) into one result row per input."""
    resources: dict[str, Any] = {"num_cpus": cluster.cpus_per_actor}
    if cluster.gpus_per_actor > 0:
        resources["num_gpus"] = cluster.gpus_per_actor
    return dataset.map_batches(
        worker,
        fn_constructor_args=(spec,),
        batch_size=cluster.files_per_batch,
        compute=ray.data.ActorPoolStrategy(size=actors),
        **resources,
    )


def run(
    work: Plan,
    spec: WorkerSpec,
    cluster: ClusterOptions,
    reporter: Reporter,
    index: str | None,
    target: Target,
    worker: type[TranscribeBatch] = TranscribeBatch,
) -> Summary:
    """Report the settled inputs, transcribe ``work.tasks`` on the cluster, then write the index (every input
    once: done, skipped or failed) to ``index`` (None: none). KeyboardInterrupt ends the run early: the summary
    says so and the index lists the inputs not finished as failed. A failure of the Ray job itself (the actors
    cannot load the model, ...) raises ClusterError once the index is written, with the unfinished inputs failed
    with its cause. Meanwhile the one line Ray's core worker writes to stderr on every run, about the actors'
    constructor arguments, is dropped (:mod:`~samba_cli.distributed.stderr_filter`)."""
    with drop_ray_noise():  # Ray and the reporter's live bar start and stop inside
        start = time.monotonic()
        outcomes = list(work.settled)
        rows = {outcome.source: _settled_row(outcome) for outcome in work.settled}
        reporter.begin(len(work.settled) + len(work.tasks))
        for outcome in work.settled:
            reporter.finished(outcome)
        interrupted, fatal = False, ""
        if work.tasks:
            started = connect(cluster)
            try:
                for row in _results(work, spec, cluster, target, worker):
                    if row["path"] in rows:  # Ray retried a batch whose rows had already come back
                        continue
                    rows[row["path"]] = row
                    outcome = _outcome(row)
                    outcomes.append(outcome)
                    reporter.finished(outcome)
            except KeyboardInterrupt:
                interrupted = True
            except ray.exceptions.RayError as error:  # not one input's failure: the job cannot go on
                fatal = f"the Ray job failed: {_reason(error)}"
            finally:
                if started and _shut_down():
                    interrupted = True
        for task in work.tasks:
            if task.job.source not in rows:
                cause = fatal or "the run was interrupted (a rerun skips it if its outputs were written)"
                message = f"{task.job.source}: no result came back, {cause}"
                rows[task.job.source] = _settled_row(Outcome(task.job.source, Status.FAILED, message))
        if index is not None:
            for task in work.tasks:
                rows[task.job.source]["name"] = task.job.name.as_posix()
            write_index(list(rows.values()), index)
        summary = Summary(tuple(outcomes), time.monotonic() - start, interrupted)
        reporter.end(summary)
    if fatal:
        raise ClusterError(fatal)
    return summary


def _shut_down() -> bool:
    """``ray.shutdown()``, finished even when a Ctrl-C lands while it runs (then True), so that the index is still
    written; a Ctrl-C during the second try ends the command."""
    try:
        ray.shutdown()
    except KeyboardInterrupt:
        ray.shutdown()
        return True
    return False


def _results(
    work: Plan, spec: WorkerSpec, cluster: ClusterOptions, target: Target, worker: type[TranscribeBatch]
) -> Iterator[dict[str, Any]]:
    items = [
        {
            "path": task.job.source,
            "outputs": json.dumps([[o.format, target.locate(o.path)] for o in task.outputs if o.path]),
        }
        for task in work.tasks
    ]
    batches = math.ceil(len(items) / cluster.files_per_batch)
    actors = pool_size(cluster, batches)
    logger.info("%d inputs in %d batches on %d actors", len(items), batches, actors)
    dataset = ray.data.from_items(items, override_num_blocks=batches)
    for row in transcribe_dataset(dataset, spec, cluster, actors, worker).iter_rows():
        yield {key: value.item() if hasattr(value, "item") else value for key, value in row.items()}


def _reason(error: BaseException) -> str:
    """The innermost cause of a Ray error (Ray wraps an actor's exception, with its traceback, in its own)."""
    while getattr(error, "cause", None) is not None and error.cause is not error:
        error = error.cause
    lines = [line for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return re.sub(
        r"^samba_cli\.errors\.\w+: ", "", lines[-1].strip()
    )  # samba's own errors are one line already


def _outcome(row: dict[str, Any]) -> Outcome:
    if row["status"] != Status.DONE.value:
        return Outcome(row["path"], Status.FAILED, row["error"])
    written = tuple(Path(location) for location in json.loads(row["outputs"]) if not is_url(location))
    return Outcome(row["path"], Status.DONE, duration=row["duration"], outputs=written)


def _settled_row(outcome: Outcome) -> dict[str, Any]:
    return {
        "path": outcome.source,
        "name": "",
        "status": outcome.status.value,
        "error": outcome.message,
        "duration": 0.0,
        "text": "",
        "segments": "[]",
        "language": "",
        "model": "",
        "decode_seconds": 0.0,
        "outputs": "[]",
    }
