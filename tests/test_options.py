"""The command line's defaults are the library's: each option that sets a library dataclass field has that field's
default, read here from the imported dataclass and from the built click command."""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys

import click
import pytest
import typer

from samba_cli import options as library
from samba_cli.commands import cluster, transcribe
from samba_cli.commands.eval import eval_command
from samba_cli.cues import CueOptions
from samba_cli.options import ClusterOptions, CTCOptions, DecodeOptions, TranscribeOptions, WindowOptions

# option (parameter name) -> the library dataclass field it sets
DECODING = {
    "decoder": (DecodeOptions, "decoder"),
    "beam_size": (DecodeOptions, "beam_size"),
}
CTC = {  # DecodeOptions.ctc
    name: (CTCOptions, name)
    for name in (
        "lm",
        "lm_weight",
        "word_bonus",
        "oov_penalty",
        "lexicon",
        "lexicon_penalty",
        "rescore_weight",
        "attention_beam",
    )
}
PIPELINE = {
    "vad": (WindowOptions, "vad"),
    "word_timestamps": (TranscribeOptions, "word_timestamps"),
    "batch_size": (DecodeOptions, "batch_size"),
}
CLUSTER = {
    name: (ClusterOptions, name)
    for name in ("address", "actors", "cpus_per_actor", "gpus_per_actor", "files_per_batch")
}
MAPPED = {
    "transcribe": DECODING
    | CTC
    | PIPELINE
    | {
        "window_seconds": (WindowOptions, "window_seconds"),
        "encoder_batch_seconds": (TranscribeOptions, "encoder_batch_seconds"),
        "max_line_width": (CueOptions, "max_line_width"),
        "max_line_count": (CueOptions, "max_line_count"),
        "max_cue_duration": (CueOptions, "max_duration"),
    },
    "eval": DECODING | CTC,
    "cluster": DECODING | PIPELINE | CLUSTER,
}
# options with no library dataclass field, or a value the command resolves itself (search_workers 0: auto)
MODEL = {"model", "revision", "device", "dtype", "local_files_only"}
COMMAND_LINE_ONLY = {
    "transcribe": MODEL
    | {"inputs", "output_format", "output_dir", "recursive", "ext", "skip_existing", "threads", "quiet"}
    | {
        "verbose",
        "search_workers",
        "window_length",
        "encoder_batch",
        "live",
    },  # the last two: hidden old spellings
    "eval": {
        "model",
        "manifest",
        "report",
        "device",
        "dtype",
        "backend",
        "batch_seconds",
        "workers",
        "threads",
    }
    | {"group_by", "search_workers", "window_longer_than"},
    "cluster": MODEL
    | {"inputs", "output_dir", "output_format", "index", "recursive", "ext", "overwrite", "quiet", "verbose"},
}
COMMANDS = {
    "transcribe": transcribe.transcribe_command,
    "eval": eval_command,
    "cluster": cluster.transcribe_command,
}


def click_command(name: str) -> click.Command:
    app = typer.Typer()
    app.command(name)(COMMANDS[name])
    app.command("other")(lambda: None)  # two commands: the app is a group, get_command a click.Group
    return typer.main.get_command(app).commands[name]


def library_default(owner, field: str):
    (spec,) = [f for f in dataclasses.fields(owner) if f.name == field]
    assert spec.default is not dataclasses.MISSING, f"{owner.__name__}.{field} has no plain default"
    return spec.default


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_mapped_to_a_library_field_or_known_to_be_the_command_lines_own(name):
    params = {param.name for param in click_command(name).params}
    assert params - set(MAPPED[name]) - COMMAND_LINE_ONLY[name] == set(), (
        "an option with an unchecked default"
    )
    assert set(MAPPED[name]) <= params and COMMAND_LINE_ONLY[name] <= params


@pytest.mark.parametrize(("name", "option"), [(n, o) for n in sorted(COMMANDS) for o in sorted(MAPPED[n])])
def test_command_line_default_is_the_library_default(name, option):
    (param,) = [p for p in click_command(name).params if p.name == option]
    cli_default = param.default.value if isinstance(param.default, enum.Enum) else param.default
    assert cli_default == library_default(*MAPPED[name][option]), f"samba {name} --{option.replace('_', '-')}"


@pytest.mark.parametrize("name", ["transcribe", "eval"])
def test_help_states_the_ctc_beam_the_code_uses(name):
    (beam,) = [p for p in click_command(name).params if p.name == "beam_size"]
    assert f"CTC with a language model: {library.LM_BEAM_SIZE} when 1" in beam.help


def test_transcribe_options_are_built_without_importing_torch():
    """Defaults come from the library's option classes, which import no torch: `samba transcribe --help` stays
    light."""
    script = (
        "import sys\nimport samba_cli.commands.transcribe, samba_cli.commands.cluster\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["transcribe", "eval"])
def test_help_states_the_fallback_the_resolve_uses(name):
    """An unset CTC weight becomes the model's value, else options.DEFAULT_<FIELD>: the help says which."""
    unset = [o for o in CTC if CTCOptions.__dataclass_fields__[o].default is None]
    assert len(unset) == 6
    for option in unset:
        (param,) = [p for p in click_command(name).params if p.name == option]
        fallback = getattr(library, f"DEFAULT_{option.upper()}")
        assert param.show_default == f"the model's, else {'0' if fallback == 0 else fallback}", option
