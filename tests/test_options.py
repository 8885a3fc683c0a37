"""The command line's defaults are the library's: each option that sets a library dataclass field has that field's
default, read here from the imported dataclass and from the built click command."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import subprocess
import sys

import click
import pytest
import typer

from samba_cli import search
from samba_cli.commands import cluster, transcribe
from samba_cli.commands.eval import eval_command
from samba_cli.commands.options import library_constant, library_fields
from samba_cli.cues import CueOptions
from samba_cli.pipeline import TranscribeOptions
from samba_cli.prefix_search import CTCOptions
from samba_cli.search import DecodeOptions
from samba_cli.windows import WindowOptions

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
    "address": ("ClusterOptions", "address"),
    "actors": ("ClusterOptions", "actors"),
    "cpus_per_actor": ("ClusterOptions", "cpus_per_actor"),
    "gpus_per_actor": ("ClusterOptions", "gpus_per_actor"),
    "files_per_batch": ("ClusterOptions", "batch_size"),
}
MAPPED = {
    "transcribe": DECODING
    | CTC
    | PIPELINE
    | {
        "window_length": (WindowOptions, "window_seconds"),
        "encoder_batch": (TranscribeOptions, "encoder_batch_seconds"),
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
    | {"verbose", "search_workers"},
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
    | {"group_by", "search_workers"},
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
    if isinstance(owner, str):  # ClusterOptions: its module imports ray
        pytest.importorskip("ray")
        owner = importlib.import_module("samba_cli.distributed.driver").ClusterOptions
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


def test_source_reader_sees_every_literal_default_and_comment():
    """The option defaults are read from the source text (no torch import for --help): same as the imports."""
    for owner in (DecodeOptions, CTCOptions, WindowOptions, TranscribeOptions, CueOptions):
        read = library_fields(owner.__module__, owner.__name__)
        literal = {
            f.name: f.default for f in dataclasses.fields(owner) if f.default is not dataclasses.MISSING
        }
        assert {name: field.default for name, field in read.items()} == literal
        assert all(field.comment for field in read.values()), owner.__name__
    assert library_fields("samba_cli.windows", "WindowOptions")["vad"].comment.startswith("keep only speech")
    assert "(see margin)" in library_fields("samba_cli.windows", "WindowOptions")["margin_seconds"].comment
    assert library_constant("samba_cli.search", "LM_BEAM_SIZE") == search.LM_BEAM_SIZE


@pytest.mark.parametrize("name", ["transcribe", "eval"])
def test_help_states_the_ctc_beam_the_code_uses(name):
    (beam,) = [p for p in click_command(name).params if p.name == "beam_size"]
    assert f"CTC with a language model: {search.LM_BEAM_SIZE} when 1" in beam.help


def test_transcribe_options_are_built_without_importing_torch():
    """Defaults and help come from the library's source text, so `samba transcribe --help` stays light."""
    script = (
        "import sys\nimport samba_cli.commands.transcribe, samba_cli.commands.cluster\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["transcribe", "eval"])
def test_help_states_the_fallback_the_resolve_uses(name):
    """An unset CTC weight becomes the model's value, else prefix_search.DEFAULT_<FIELD>: the help says which."""
    from samba_cli import prefix_search

    unset = [o for o in CTC if CTCOptions.__dataclass_fields__[o].default is None]
    assert len(unset) == 6
    for option in unset:
        (param,) = [p for p in click_command(name).params if p.name == option]
        fallback = getattr(prefix_search, f"DEFAULT_{option.upper()}")
        assert param.show_default == f"the model's, else {'0' if fallback == 0 else fallback}", option
