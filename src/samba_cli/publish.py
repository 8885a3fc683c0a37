"""Publishing a checkpoint: a Hub-ready folder with a generated README.md model card, and its upload to the Hub.

Finding, checking and downloading checkpoints is :mod:`samba_cli.hub`'s.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi, ModelCardData, constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from samba_cli.errors import CheckpointError, HubError
from samba_cli.hub import (
    CARD_FILE,
    CARD_TAGS,
    HUB_FILES,
    OPTIONAL_FILES,
    REQUIRED_FILES,
    ResolvedModel,
    WeightsSummary,
    format_size,
    hub_cache_dir,
    verify_checkpoint,
)
from samba_cli.hub_errors import http_client, hub_error
from samba_cli.model.checkpoint import MODEL_TYPE, WEIGHTS_FILE, read_config_file


def export_checkpoint(
    model: ResolvedModel,
    out_dir: str | os.PathLike,
    name: str | None = None,
    license: str = "apache-2.0",
    language: str = "en",
    overwrite: bool = False,
) -> Path:
    """Write a Hub-ready folder: the three checkpoint files and a generated README.md model card.

    ``name`` titles the card (default: the folder name). An existing non-empty folder is refused unless
    ``overwrite``.
    """
    out = Path(out_dir)
    weights = verify_checkpoint(model)
    if out.exists() and out.resolve() == model.path.resolve():
        raise CheckpointError(f"{out}: is the checkpoint itself; export into another folder")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: is a file, not a folder; give a new or empty folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"{out}: exists and is not an empty folder; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    for filename in REQUIRED_FILES:
        shutil.copyfile(model.path / filename, out / filename)
    optional = [f for f in OPTIONAL_FILES if (model.path / f).is_file()]
    for filename in optional:
        shutil.copyfile(model.path / filename, out / filename)
    card = model_card(
        read_config_file(model.path), weights, name or out.resolve().name, license, language, optional
    )
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    return out


def model_card(
    config: dict,
    weights: WeightsSummary,
    name: str,
    license: str,
    language: str,
    optional_files: Sequence[str] = (),
) -> str:
    """README.md text: YAML front matter for the Hub, then the model, its config and the metadata of config.json.

    ``name`` is the card title; when it is a repo id (owner/name) the usage example downloads that repo.
    """
    front = ModelCardData(
        language=language,
        license=license,
        library_name=MODEL_TYPE,
        pipeline_tag="automatic-speech-recognition",
        tags=list(CARD_TAGS),
    ).to_yaml()
    repo_id = name if "/" in name else f"OWNER/{name}"
    metadata = dict(config.get("metadata") or {})
    metrics = metadata.pop("metrics", None)
    lines = [
        "---",
        front,
        "---",
        "",
        f"# {name}",
        "",
        "A speech recognition model for [samba-asr](https://pypi.org/project/samba-asr/): a Samba-ASR encoder and "
        "decoder built from Mamba-2 state-space blocks ([arXiv 2501.02832](https://arxiv.org/abs/2501.02832)).",
        "",
        "## Usage",
        "",
        "```bash",
        "pip install samba-asr",
        f"samba models download {repo_id}",
        f"samba transcribe audio.wav --model {repo_id}",
        "```",
        "",
        "## Model",
        "",
        *_table(
            {
                "parameters": f"{weights.n_parameters:,}",
                "weights": f"{WEIGHTS_FILE} ({', '.join(weights.dtypes)}, {format_size(weights.size_bytes)})",
                "format_version": config.get("format_version"),
                **config.get("model", {}),
            }
        ),
    ]
    if isinstance(metrics, dict) and metrics:
        lines += ["", "## Metrics", "", *_table(metrics)]
    lines += ["", "## Training", ""]
    lines += _table(metadata) if metadata else ["No training metadata was recorded in config.json."]
    lines += ["", "## Files", ""]
    lines += [f"- `{f}`" for f in (*REQUIRED_FILES, *optional_files, CARD_FILE)]
    return "\n".join(lines) + "\n"


def push_checkpoint(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload an exported folder to a Hub repo (created if needed; a new ``revision`` branch starts from main).

    Returns the commit URL.
    """
    path = Path(folder)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HubError(f"{repo_id}: not a Hub repo id (owner/name)") from exc
    verify_checkpoint(ResolvedModel(path=path, model_id=str(folder), revision=None, source="local"))
    if not (path / CARD_FILE).is_file():
        raise CheckpointError(
            f"{folder}: no {CARD_FILE} model card; create the folder with `samba models export`"
        )
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != constants.DEFAULT_REVISION:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            folder_path=path,
            repo_id=repo_id,
            revision=revision,
            allow_patterns=list(HUB_FILES),
            commit_message=commit_message or f"Upload {MODEL_TYPE} checkpoint",
        )
    except (OSError, http_client().HTTPError) as exc:
        raise hub_error(exc, repo_id, revision, False, hub_cache_dir(None), write=True) from exc
    return commit.commit_url


def _table(rows: dict) -> list[str]:
    """A two-column Markdown table; nested values are written as JSON."""
    lines = ["| | |", "|---|---|"]
    for key, value in rows.items():
        text = value if isinstance(value, str) else json.dumps(value)
        escaped = text.replace("|", "\\|")
        lines.append(f"| {key} | {escaped} |")
    return lines
