"""Hub failures as single lines: the exception types, and :func:`hub_error`, which turns an error from
``huggingface_hub`` or its HTTP client into one of them naming the repo, the cause and what to do."""

from __future__ import annotations

import types
from pathlib import Path

from samba_cli.errors import HubError, SambaError

_TOKEN_HINT = "pass a token with --token, set HF_TOKEN, or run `hf auth login`"


class ModelNotFoundError(HubError):
    """The Hub has no such repo, revision or file."""


class HubAuthError(HubError):
    """The repo is private or gated, or the token was refused (HTTP 401/403)."""


class ModelNotCachedError(HubError):
    """Offline (HF_HUB_OFFLINE or local_files_only) and the model is not in the cache."""


class HubConnectionError(HubError):
    """The Hub endpoint cannot be reached and the model is not in the cache."""


class DownloadError(HubError):
    """A download stopped halfway (connection cut, server error, disk error)."""


def repo_label(repo_id: str, revision: str | None) -> str:
    """``owner/name``, or ``owner/name@revision`` when a revision is given: how messages name a repo."""
    return repo_id if revision is None else f"{repo_id}@{revision}"


def http_client() -> types.ModuleType:
    """The HTTP client under huggingface_hub, whose errors a download can raise: httpx2 from huggingface_hub 2.0,
    httpx in 1.x (.ci/run tests 1.22)."""
    import huggingface_hub

    if int(huggingface_hub.__version__.split(".")[0]) >= 2:
        import httpx2

        return httpx2
    import httpx

    return httpx


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = next((line for line in lines if line.strip()), "")
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__


def hub_error(
    exc: BaseException,
    repo_id: str,
    revision: str | None,
    local_files_only: bool,
    cache_dir: Path,
    write: bool = False,
) -> SambaError:
    """One line that says what went wrong with ``repo_id`` on the Hub and what to do about it."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    http = http_client()
    label = repo_label(repo_id, revision)
    endpoint = constants.ENDPOINT
    if isinstance(exc, GatedRepoError):
        return HubAuthError(
            f"{label}: gated repo on {endpoint}; accept its conditions at {endpoint}/{repo_id}, then {_TOKEN_HINT}"
        )
    if isinstance(exc, RepositoryNotFoundError):
        if exc.response.status_code == 401:
            return HubAuthError(
                f"{label}: not found on {endpoint}, or private and no valid token was sent; "
                f"check the name, or {_TOKEN_HINT}"
            )
        return ModelNotFoundError(
            f"{label}: no such model repo on {endpoint} (and no local folder of that name); check the name"
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelNotFoundError(
            f"{label}: {endpoint} has no revision {revision!r}; check the branch, tag or commit"
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return ModelNotFoundError(f"{label}: a checkpoint file is missing on {endpoint} ({_short(exc)})")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code
        if status in (401, 403):
            need = "a token with write access" if write else "a token that can read the repo"
            return HubAuthError(
                f"{label}: {endpoint} refused access (HTTP {status}); this needs {need}: {_TOKEN_HINT}"
            )
        return DownloadError(
            f"{label}: {endpoint} answered HTTP {status}; try again later (finished files are kept)"
        )
    if isinstance(exc, IncompleteSnapshotError):
        return ModelNotCachedError(
            f"{label}: the cached copy is incomplete and {endpoint} cannot be used; "
            f"run `samba models download {repo_id}` with network access"
        )
    if isinstance(exc, LocalEntryNotFoundError):
        cause = exc.__cause__
        if local_files_only:
            return ModelNotCachedError(
                f"{label}: not in the model cache ({cache_dir}) and downloads are off (--local-files-only); "
                f"run `samba models download {repo_id}` with network access first"
            )
        if isinstance(cause, OfflineModeIsEnabled) or constants.is_offline_mode():
            return ModelNotCachedError(
                f"{label}: not in the model cache ({cache_dir}) and downloads are off (HF_HUB_OFFLINE is set); "
                "unset HF_HUB_OFFLINE to download it"
            )
        if isinstance(cause, (HfHubHTTPError, http.HTTPError)):
            return hub_error(cause, repo_id, revision, local_files_only, cache_dir, write)
        return HubConnectionError(
            f"{label}: not in the model cache ({cache_dir}) and {endpoint} cannot be used ({_short(exc)})"
        )
    if isinstance(exc, (http.ConnectError, http.TimeoutException, OfflineModeIsEnabled)):
        return HubConnectionError(
            f"{label}: cannot reach {endpoint} ({_short(exc)}); check the network, or HF_ENDPOINT if you use a mirror"
        )
    return DownloadError(f"{label}: transfer with {endpoint} failed ({_short(exc)}); run the command again")
