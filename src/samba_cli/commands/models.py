"""`samba models`: list, download, inspect, delete, export and publish checkpoints. A thin layer over samba_cli.hub.

samba_cli.hub (torch, huggingface_hub) is imported inside each command, so that `samba --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from samba_cli.errors import SambaError

app = typer.Typer(
    help="Find, download, inspect, delete, export and publish samba-asr models.", no_args_is_help=True
)
console = Console()

CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Hugging Face cache folder (default: HF_HUB_CACHE, else HF_HOME/hub)", show_default=False
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        help="Hub access token (default: HF_TOKEN, else the one saved by `hf auth login`)", show_default=False
    ),
]
RevisionOption = Annotated[
    str | None,
    typer.Option("--revision", "-r", help="Branch, tag or commit hash of a Hub repo (default: main)"),
]
OfflineOption = Annotated[bool, typer.Option("--offline", help="Only look in the cache; never download.")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print a SambaError as one line on stderr and exit with status 1."""
    try:
        yield
    except SambaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _say(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False, markup=False)


@app.command("list")
def list_command(cache_dir: CacheDirOption = None) -> None:
    """List the bundled models and the samba-asr models in the Hugging Face cache."""
    from samba_cli.hub import format_size, list_models  # torch

    with _user_errors():
        models = list_models(cache_dir)
    table = Table("Model", "Source", "Revision", "Refs", "Size", "Path")
    table.columns[0].no_wrap = True
    table.columns[5].overflow = "fold"
    for model in models:
        table.add_row(
            model.model_id,
            model.source,
            model.revision[:8] if model.revision else "-",
            ", ".join(model.refs) or "-",
            format_size(model.size_bytes) if model.size_bytes is not None else "not installed",
            str(model.path),
        )
    console.print(table)


@app.command()
def download(
    repo: Annotated[
        str, typer.Argument(metavar="REPO", help="Hub repo id (owner/name).", show_default=False)
    ],
    revision: RevisionOption = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    token: TokenOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Download a model from the Hugging Face Hub into the cache and check its files."""
    from samba_cli.hub import download_model  # torch

    with _user_errors():
        model = download_model(repo, revision=revision, cache_dir=cache_dir, token=token, force=force)
    _say(f"Downloaded {model.model_id} (revision {model.revision}) to {model.path}")


@app.command()
def info(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="Bundled name, checkpoint folder or Hub repo id.", show_default=False
        ),
    ],
    revision: RevisionOption = None,
    offline: OfflineOption = False,
    token: TokenOption = None,
    cache_dir: CacheDirOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything (full config, metadata, model card) as JSON.")
    ] = False,
) -> None:
    """Summarise a model: config, parameter count (from the safetensors header), metadata and model card."""
    from samba_cli.hub import checkpoint_info, format_size, resolve_model  # torch

    with _user_errors():
        details = checkpoint_info(resolve_model(model, revision, cache_dir, offline, token))
    resolved, weights = details.model, details.weights
    if as_json:
        document = {
            "model": resolved.model_id,
            "source": resolved.source,
            "revision": resolved.revision,
            "path": str(resolved.path),
            "parameters": weights.n_parameters,
            "tensors": weights.n_tensors,
            "dtypes": list(weights.dtypes),
            "size_bytes": weights.size_bytes,
            "config": details.config,
            "card": details.card,
        }
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    table = Table("Field", "Value", show_header=False)
    table.columns[1].overflow = "fold"
    architecture = details.config.get("model", {})
    rows = {
        "model": resolved.model_id,
        "source": resolved.source,
        "revision": resolved.revision or "-",
        "path": str(resolved.path),
        "parameters": f"{weights.n_parameters:,}",
        "tensors": f"{weights.n_tensors} ({', '.join(weights.dtypes)}, {format_size(weights.size_bytes)})",
        "format_version": str(details.config.get("format_version")),
        "architecture": ", ".join(f"{key} {value}" for key, value in architecture.items() if _scalar(value)),
    }
    for key, value in (details.config.get("metadata") or {}).items():
        rows[f"metadata.{key}"] = str(value) if _scalar(value) else f"{len(value)} entries (--json)"
    card = details.card
    if card is None:
        rows["model card"] = "(no model card)"
    else:
        lines = card.splitlines()
        body = lines
        if lines and lines[0].strip() == "---" and "---" in (line.strip() for line in lines[1:]):
            body = lines[
                [line.strip() for line in lines].index("---", 1) + 1 :
            ]  # after the YAML front matter
        title = next((line.strip() for line in body if line.strip()), "")
        rows["model card"] = f"{title} ({len(lines)} lines, README.md; --json)"
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)


def _scalar(value: object) -> bool:
    return not isinstance(value, dict | list)


@app.command("rm")
def rm(
    repo: Annotated[
        str, typer.Argument(metavar="REPO", help="Hub repo id (owner/name).", show_default=False)
    ],
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision", "-r", help="Only this branch, tag or commit (default: every cached revision)"
        ),
    ] = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Delete a downloaded model from the Hugging Face cache."""
    from samba_cli.hub import format_size, remove_model  # torch

    with _user_errors():
        removed = remove_model(repo, revision=revision, cache_dir=cache_dir)
    revisions = ", ".join(r[:8] for r in removed.revisions)
    _say(f"Removed {removed.model_id} ({revisions}), freed {format_size(removed.freed_bytes)}")


@app.command()
def export(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="CHECKPOINT", help="Bundled name, checkpoint folder or Hub repo id.", show_default=False
        ),
    ],
    out_dir: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to write (new or empty).", show_default=False)
    ],
    name: Annotated[
        str | None,
        typer.Option(
            help="Model card title; owner/name also fills in the usage example (default: the name of DIR)"
        ),
    ] = None,
    license: Annotated[str, typer.Option(help="License id for the model card.")] = "apache-2.0",
    language: Annotated[str, typer.Option(help="Language code for the model card.")] = "en",
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty DIR.")] = False,
    revision: RevisionOption = None,
    token: TokenOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Write a Hub-ready folder: the checkpoint files and a generated README.md model card."""
    from samba_cli.hub import resolve_model  # torch
    from samba_cli.publish import export_checkpoint

    with _user_errors():
        model = resolve_model(checkpoint, revision, cache_dir, token=token)
        out = export_checkpoint(
            model, out_dir, name=name, license=license, language=language, overwrite=force
        )
    repo = name if name is not None and "/" in name else "OWNER/NAME"
    _say(f"Exported {model.model_id} to {out}; publish it with `samba models push {out} {repo}`")


@app.command()
def push(
    folder: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="Folder written by `samba models export`.", show_default=False),
    ],
    repo: Annotated[
        str,
        typer.Argument(
            metavar="REPO", help="Hub repo id (owner/name); created if missing.", show_default=False
        ),
    ],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision", "--branch", help="Branch to commit to, created from main if new (default: main)"
        ),
    ] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    token: TokenOption = None,
) -> None:
    """Upload an exported folder to a Hugging Face Hub repo (needs a token with write access)."""
    from samba_cli.publish import push_checkpoint  # torch

    with _user_errors():
        url = push_checkpoint(
            folder, repo, private=private, revision=revision, token=token, commit_message=message
        )
    _say(f"Pushed {folder} to {repo}: {url}")
