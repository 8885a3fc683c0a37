"""Models by name: the bundled model, a local checkpoint folder, or a Hugging Face Hub repo, checked before use.

A checkpoint (a folder or a Hub repo) holds config.json, model.safetensors, tokenizer.model and a README.md model
card. Downloads go through ``huggingface_hub.snapshot_download`` into its cache, so HF_HOME / HF_HUB_CACHE,
HF_HUB_OFFLINE, HF_TOKEN and HF_ENDPOINT work as they do for every Hub library. Every Hub failure becomes one
:class:`~samba_cli.errors.HubError` (or :class:`~samba_cli.errors.CheckpointError`) line that names the repo, the
cause and what to do (:mod:`samba_cli.hub_errors`). Exporting a checkpoint with a model card and uploading it:
:mod:`samba_cli.publish`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from samba_cli.decoding.lm import LEXICON_FILE, LM_FILE
from samba_cli.errors import CheckpointError, HubError
from samba_cli.hub_errors import (  # noqa: F401 (the exception types are documented as samba_cli.hub's)
    DownloadError,
    HubAuthError,
    HubConnectionError,
    ModelNotCachedError,
    ModelNotFoundError,
    http_client,
    hub_error,
    repo_label,
)
from samba_cli.model.checkpoint import (
    CONFIG_FILE,
    MODEL_TYPE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    read_config_file,
)
from samba_cli.model.samba import SambaASR

CARD_FILE = "README.md"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)  # what a usable checkpoint must hold
# a language model for CTC decoding and its lexicon, when the checkpoint has them
OPTIONAL_FILES = (LM_FILE, LEXICON_FILE)
# what is downloaded from and uploaded to a Hub repo
HUB_FILES = (*REQUIRED_FILES, *OPTIONAL_FILES, CARD_FILE)
DEFAULT_MODEL = "samba-tiny-en"
BUNDLED_DIR = Path(__file__).parent / "assets" / "models"
# bundled model name -> its folder inside the installed package
BUNDLED_MODELS: dict[str, Path] = {DEFAULT_MODEL: BUNDLED_DIR / DEFAULT_MODEL}
CARD_TAGS = ("automatic-speech-recognition", "mamba")
_MAX_HEADER_BYTES = 100_000_000  # safetensors refuses headers above 100 MB

ModelSource = Literal["bundled", "local", "hub"]


class CorruptCheckpointError(CheckpointError):
    """model.safetensors is truncated or not a safetensors file."""


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # folder holding config.json, model.safetensors, tokenizer.model (and README.md)
    model_id: str  # the bundled name, the local folder as given, or the Hub repo id
    revision: str | None  # commit hash of the Hub snapshot; None for bundled models and local folders
    source: ModelSource  # where the files came from


@dataclass(frozen=True)
class WeightsSummary:
    n_tensors: int  # tensors stored in model.safetensors
    n_parameters: int  # elements summed over all tensors
    dtypes: tuple[str, ...]  # distinct safetensors dtypes, sorted (e.g. ("F16",))
    size_bytes: int  # file size


@dataclass(frozen=True)
class CheckpointInfo:
    model: ResolvedModel  # where the checkpoint is
    config: dict  # the parsed config.json
    weights: WeightsSummary  # read from the safetensors header, no tensor is loaded
    card: str | None  # README.md text, if the checkpoint has one


@dataclass(frozen=True)
class CachedModel:
    model_id: str  # bundled name or Hub repo id
    source: ModelSource  # "bundled" or "hub"
    revision: str | None  # commit hash of the cached snapshot; None for bundled models
    refs: tuple[str, ...]  # branches and tags that point at this snapshot (e.g. ("main",))
    size_bytes: int | None  # size on disk; None when a bundled model is not installed
    path: Path  # snapshot or bundled folder


@dataclass(frozen=True)
class RemovedModel:
    model_id: str  # Hub repo id
    revisions: tuple[str, ...]  # commit hashes deleted from the cache
    freed_bytes: int  # disk space given back


# -- resolving and loading ---------------------------------------------------------------------------------------


def resolve_model(
    name_or_path: str | os.PathLike | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
) -> ResolvedModel:
    """Find a checkpoint folder by name and check it: config.json readable, safetensors header intact.

    ``None`` or a name in :data:`BUNDLED_MODELS` is a bundled model; an existing folder is a local checkpoint;
    anything else must be a Hub repo id (``owner/name``), downloaded into the Hugging Face cache (or found there).
    ``revision`` (branch, tag or commit) applies to Hub repos only.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if isinstance(name_or_path, str) and name_or_path in BUNDLED_MODELS:
        if revision is not None:
            raise HubError(f"{name_or_path}: is bundled with samba-asr; --revision applies to Hub repos only")
        return _bundled(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(
                f"{name_or_path}: is a file; pass the checkpoint folder that holds {WEIGHTS_FILE}"
            )
        if revision is not None:
            raise HubError(f"{name_or_path}: is a local folder; --revision applies to Hub repos only")
        model = ResolvedModel(path=path, model_id=str(name_or_path), revision=None, source="local")
        verify_checkpoint(model)
        return model
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError as exc:
        raise CheckpointError(
            f"{name_or_path}: no such checkpoint folder, and not a Hub repo id (owner/name); "
            f"bundled models: {', '.join(BUNDLED_MODELS)}"
        ) from exc
    near = difflib.get_close_matches(str(name_or_path), BUNDLED_MODELS, n=1, cutoff=0.6)
    if near and "/" not in str(name_or_path):  # a typo of a bundled name, not an owner/name repo id
        raise ModelNotFoundError(
            f"{name_or_path}: no such bundled model or checkpoint folder; did you mean the bundled {near[0]}?"
        )
    return download_model(
        str(name_or_path),
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )


def download_model(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
    force: bool = False,
) -> ResolvedModel:
    """Fetch a Hub repo's checkpoint files into the cache (or find them there) and check them.

    ``force`` downloads the files again even when cached (the fix for a corrupt cached file).
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HubError(f"{repo_id}: not a Hub repo id (owner/name)") from exc
    if force and (local_files_only or constants.is_offline_mode()):
        raise HubError(
            f"{repo_label(repo_id, revision)}: --force downloads again and needs the network; unset HF_HUB_OFFLINE"
        )
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(HUB_FILES),
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force,
        )
    except (OSError, http_client().HTTPError) as exc:
        raise hub_error(exc, repo_id, revision, local_files_only, hub_cache_dir(cache_dir)) from exc
    path = Path(folder)
    model = ResolvedModel(path=path, model_id=repo_id, revision=path.name, source="hub")
    verify_checkpoint(model)
    return model


def load_checkpoint_from(
    name_or_path: str | os.PathLike | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
) -> tuple[SambaASR, ResolvedModel]:
    """:func:`resolve_model`, then build the model from its folder with ``load_checkpoint``."""
    model = resolve_model(name_or_path, revision, cache_dir, local_files_only, token)
    return load_checkpoint(model.path, device=device, dtype=dtype, backend=backend), model


def _bundled(name: str) -> ResolvedModel:
    folder = BUNDLED_MODELS[name]
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"{name}: the bundled model is not installed ({folder} has no {WEIGHTS_FILE}); "
            "reinstall samba-asr, or pass a Hub repo id or a checkpoint folder"
        )
    model = ResolvedModel(path=folder, model_id=name, revision=None, source="bundled")
    verify_checkpoint(model)
    return model


# -- checking ----------------------------------------------------------------------------------------------------


def verify_checkpoint(model: ResolvedModel) -> WeightsSummary:
    """Check that the files are there, config.json is a supported samba-asr config, and the weights are whole."""
    label = _model_label(model)
    missing = [name for name in REQUIRED_FILES if not (model.path / name).is_file()]
    if missing:
        hint = ""
        if (model.path / "checkpoint" / REQUIRED_FILES[0]).is_file():  # a `samba train run` folder
            hint = f" (a training run folder: its weights are in {model.path / 'checkpoint'})"
        raise CheckpointError(
            f"{label}: no {', '.join(missing)} in {model.path}; a samba-asr checkpoint holds "
            f"{', '.join(REQUIRED_FILES)}{hint}"
        )
    try:
        read_config_file(model.path)
    except CheckpointError as exc:
        raise CheckpointError(f"{label}: {exc}") from exc
    try:
        return weights_summary(model.path / WEIGHTS_FILE)
    except ValueError as exc:
        raise CorruptCheckpointError(
            f"{label}: {WEIGHTS_FILE} is corrupt or truncated ({exc}); {_repair_hint(model)}"
        ) from exc


def weights_summary(path: Path) -> WeightsSummary:
    """Tensor count, parameter count and dtypes from a safetensors header, without reading the tensors.

    Raises ValueError when the header does not parse or the tensor data does not end exactly at the end of the
    file (a truncated download).
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
        header_len = int.from_bytes(prefix, "little")
        if header_len > min(size - 8, _MAX_HEADER_BYTES):
            raise ValueError(f"header length {header_len} does not fit in the {size}-byte file")
        try:
            header = json.loads(f.read(header_len))
        except json.JSONDecodeError as exc:
            raise ValueError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    try:
        data_end = max((int(entry["data_offsets"][1]) for entry in tensors.values()), default=0)
        n_parameters = sum(math.prod(int(d) for d in entry["shape"]) for entry in tensors.values())
        dtypes = tuple(sorted({str(entry["dtype"]) for entry in tensors.values()}))
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"malformed tensor entry in the header ({exc!r})") from exc
    expected = 8 + header_len + data_end
    if expected != size:
        raise ValueError(f"the header describes {expected} bytes but the file has {size}")
    return WeightsSummary(n_tensors=len(tensors), n_parameters=n_parameters, dtypes=dtypes, size_bytes=size)


def checkpoint_info(model: ResolvedModel) -> CheckpointInfo:
    """Config, weight summary and model card of a resolved checkpoint."""
    weights = verify_checkpoint(model)
    card = model.path / CARD_FILE
    return CheckpointInfo(
        model=model,
        config=read_config_file(model.path),
        weights=weights,
        card=card.read_text(encoding="utf-8") if card.is_file() else None,
    )


# -- the cache ---------------------------------------------------------------------------------------------------


def list_models(cache_dir: str | os.PathLike | None = None) -> list[CachedModel]:
    """Bundled models, then every cached Hub snapshot whose config.json has model_type samba-asr."""
    found = [
        CachedModel(
            model_id=name,
            source="bundled",
            revision=None,
            refs=(),
            size_bytes=_folder_size(folder),
            path=folder,
        )
        for name, folder in BUNDLED_MODELS.items()
    ]
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hub_cache_dir(cache_dir))
    except CacheNotFound:
        return found
    cached = [
        CachedModel(
            model_id=repo.repo_id,
            source="hub",
            revision=rev.commit_hash,
            refs=tuple(sorted(rev.refs)),
            size_bytes=rev.size_on_disk,
            path=rev.snapshot_path,
        )
        for repo in cache.repos
        if repo.repo_type == "model"
        for rev in repo.revisions
        if _is_samba_config(rev.snapshot_path / CONFIG_FILE)
    ]
    return found + sorted(cached, key=lambda m: (m.model_id, m.refs == (), m.refs, m.revision))


def remove_model(
    repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> RemovedModel:
    """Delete a Hub model from the cache: every revision, or one (branch, tag, commit hash or its prefix)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_path = hub_cache_dir(cache_dir)
    try:
        cache = scan_cache_dir(cache_path)
    except CacheNotFound as exc:
        raise ModelNotCachedError(f"{repo_id}: not in the model cache ({cache_path} does not exist)") from exc
    repo = next((r for r in cache.repos if r.repo_id == repo_id and r.repo_type == "model"), None)
    if repo is None:
        raise ModelNotCachedError(
            f"{repo_id}: not in the model cache ({cache_path}); see `samba models list`"
        )
    revisions = sorted(
        rev.commit_hash
        for rev in repo.revisions
        if revision is None
        or revision in rev.refs
        or (len(revision) >= 4 and rev.commit_hash.startswith(revision))
    )
    if not revisions:
        cached = ", ".join(
            sorted(r.commit_hash[:8] + "".join(f" ({ref})" for ref in sorted(r.refs)) for r in repo.revisions)
        )
        raise ModelNotCachedError(f"{repo_id}: revision {revision!r} is not cached (cached: {cached})")
    strategy = cache.delete_revisions(*revisions)
    strategy.execute()
    return RemovedModel(
        model_id=repo_id, revisions=tuple(revisions), freed_bytes=strategy.expected_freed_size
    )


# -- helpers -----------------------------------------------------------------------------------------------------


def format_size(n_bytes: int) -> str:
    """Bytes in decimal units, as the Hub shows them: 512 B, 1.5 kB, 230.4 MB."""
    units = ("B", "kB", "MB", "GB", "TB")
    exponent = min(int(math.log10(max(n_bytes, 1)) // 3), len(units) - 1)
    return f"{n_bytes} B" if exponent == 0 else f"{n_bytes / 1000**exponent:.1f} {units[exponent]}"


def hub_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """The Hub cache in use: the argument, else HF_HUB_CACHE (read by huggingface_hub at import)."""
    from huggingface_hub import constants

    return Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()


def _folder_size(folder: Path) -> int | None:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if folder.is_dir() else None


def _is_samba_config(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def _model_label(model: ResolvedModel) -> str:
    return repo_label(model.model_id, model.revision[:8] if model.revision else None)


def _repair_hint(model: ResolvedModel) -> str:
    if model.source == "hub":
        return (
            f"download it again with `samba models download {model.model_id} --force`, "
            f"or delete it with `samba models rm {model.model_id}`"
        )
    if model.source == "bundled":
        return "reinstall samba-asr"
    return "copy or export the checkpoint again"
