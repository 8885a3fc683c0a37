"""The `samba` command: a root Typer app that registers the subcommands and nothing more.

Subcommands live in :mod:`samba_cli.commands` and are imported only when used (or listed by ``--help``), so
``samba --version`` and shell completion do not pay for torch. A SambaError escaping a subcommand is printed
as one line, ``error: <message>``, with exit status 1; usage errors exit with 2 (Typer's own rule).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import shutil
import signal
from dataclasses import dataclass
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from samba_cli import __version__
from samba_cli.errors import SambaError


@dataclass(frozen=True)
class LazyCommand:
    module: str  # module that defines the command
    attribute: str  # a typer.Typer app (a command group) or a command function in that module
    summary: str  # the first line of its help, shown by `samba --help` without importing the module (tested)


# Subcommands in help order. A module that does not exist (yet) is left out of the CLI.
COMMANDS: dict[str, LazyCommand] = {
    "transcribe": LazyCommand(
        "samba_cli.commands.transcribe",
        "transcribe_command",
        "Transcribe media files, folders, globs or standard input to txt, srt, vtt, json, jsonl or tsv.",
    ),
    "models": LazyCommand(
        "samba_cli.commands.models",
        "app",
        "Find, download, inspect, delete, export and publish samba-asr models.",
    ),
    "train": LazyCommand(
        "samba_cli.commands.train", "app", "Train Samba-ASR models and their sentencepiece tokenizers."
    ),
    "eval": LazyCommand(
        "samba_cli.commands.eval",
        "eval_command",
        "Transcribe a manifest and score it: WER and CER after Whisper's English normaliser, and speed.",
    ),
    "cluster": LazyCommand(
        "samba_cli.commands.cluster",
        "app",
        "Transcribe on a Ray cluster, from and to local folders or object storage.",
    ),
    # New subcommands are added here (nowhere else): name -> module, its typer app or command function, summary.
}


# Rich help tables cut long option names (--word-timestam…) in terminals narrower than this; there the plain
# click help is shown instead, which wraps and never cuts (measured: `samba transcribe -h` is cut at 90 columns).
RICH_HELP_MIN_COLUMNS = 100


def _load(name: str, spec: LazyCommand) -> Any | None:
    """The click command behind ``spec``, or None when its module is not installed."""
    if importlib.util.find_spec(spec.module) is None:
        return None
    target = getattr(importlib.import_module(spec.module), spec.attribute)
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
        command.name = name
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    if shutil.get_terminal_size().columns < RICH_HELP_MIN_COLUMNS:
        _plain_help(command)
    return command


def _plain_help(command: Any) -> None:
    """Make ``command`` (and its subcommands) print click's plain help, keeping the line breaks of the help text
    as the rich help does (click rewraps a paragraph unless it starts with a \\b line)."""
    command.rich_markup_mode = None
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(f"\b\n{p}" if "\n" in p else p for p in paragraphs)
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


class SambaGroup(TyperGroup):
    """Resolves subcommands from :data:`COMMANDS` on demand and turns SambaError into one line on stderr."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = [name for name, spec in COMMANDS.items() if importlib.util.find_spec(spec.module) is not None]
        return names + [name for name in super().list_commands(ctx) if name not in COMMANDS]

    listing = False  # True while `samba --help` lists the subcommands: their summaries need no import

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any | None:
        if self.listing and cmd_name not in self.commands and cmd_name in COMMANDS:
            return click.Command(cmd_name, help=COMMANDS[cmd_name].summary)
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            command = _load(cmd_name, COMMANDS[cmd_name])
            if command is None:
                return None
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SambaError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=SambaGroup,
    name="samba",
    help="Speech transcription with Samba-ASR (Mamba-2 encoder and decoder).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"samba {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options of `samba` itself (the app's help text is given to typer.Typer above)."""


def main() -> None:
    # SIGTERM (kill, a service manager, a job scheduler) stops a run the way Ctrl-C does: finished files are
    # kept, the summary is printed and search workers are shut down, instead of dying mid-write
    signal.signal(signal.SIGTERM, _interrupt)
    app()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
