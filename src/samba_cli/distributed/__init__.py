"""Batch transcription spread over a Ray cluster, reading from and writing to local folders or object storage.

* :mod:`~samba_cli.distributed.storage`: fsspec URLs (``s3://``, ``gs://``, ...) beside local paths: discovery,
  output planning (the local batch mode's names and overwrite rules), atomic writes, the Parquet index.
* :mod:`~samba_cli.distributed.worker`: :class:`~samba_cli.distributed.worker.TranscribeBatch`, the callable
  class that Ray Data's ``map_batches`` runs on each actor: one model per actor, a batch of rows in, one row of
  flat columns out per input, a failure as a row with its error.
* :mod:`~samba_cli.distributed.driver`: the job: a dataset of the planned inputs, ``map_batches`` on an actor
  pool, progress, the summary and the index.

Ray, pyarrow and fsspec come with the ``ray`` extra (``pip install 'samba-asr[ray]'``); :func:`require` turns a
missing one into a one-line error.
"""

from __future__ import annotations

import importlib.util

from samba_cli.errors import SambaError

EXTRA = "ray"  # the pyproject extra that installs what this package needs
_MODULES = ("ray", "pyarrow", "fsspec")  # imported by the submodules


class MissingExtraError(SambaError):
    """Ray, pyarrow or fsspec is not installed."""


def require() -> None:
    """Raise :class:`MissingExtraError` (one line: what is missing and how to install it) unless the extra is
    installed."""
    missing = [name for name in _MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"{', '.join(missing)} not installed: distributed transcription needs "
            f"pip install 'samba-asr[{EXTRA}]'"
        )
