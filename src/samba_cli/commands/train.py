"""`samba train run MANIFEST` and `samba train tokenizer TEXT...`: thin wrappers over samba_cli.train."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import typer

from samba_cli.commands.options import finite
from samba_cli.errors import OptionError, SambaError, original_message
from samba_cli.tokenizer import train_tokenizer
from samba_cli.train.config import Schedule, TrainConfig, field_help

app = typer.Typer(
    help="Train Samba-ASR models and their sentencepiece tokenizers.",
    no_args_is_help=True,
    add_completion=False,
)

_HELP = field_help()
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _option(name: str, *flags: str) -> typer.models.OptionInfo:
    """An option whose default (None) means the TrainConfig default, shown in the help."""
    default = _DEFAULTS[name]
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else getattr(default, "value", default)
    checked = {"callback": finite} if isinstance(default, float) else {}
    return typer.Option(None, *flags, help=_HELP[name], show_default=str(shown), **checked)


def _floats(name: str, text: str | None) -> tuple[float, ...] | None:
    """The comma-separated numbers of option ``--name``: finite ones only."""
    if text is None:
        return None
    try:
        return finite(tuple(float(x) for x in text.split(",")))
    except (ValueError, typer.BadParameter):
        raise typer.BadParameter(
            f"{text!r}: expected finite numbers separated by commas",
            param_hint=f"'--{name.replace('_', '-')}'",
        ) from None


@app.command("run")
def run_command(
    manifest: str = typer.Argument(
        ...,
        help="training manifest (JSONL: audio, text, duration per line) or lhotse CutSet "
        "(cuts .jsonl.gz, Shar folder, Shar fields .json; path or URL)",
    ),
    tokenizer: Path = typer.Option(..., "--tokenizer", help=_HELP["tokenizer"]),
    out_dir: str = _option("out_dir", "--out"),
    dev_manifest: str = _option("dev_manifest", "--dev"),
    preset: str = _option("preset"),
    init_from: str = _option("init_from", "--init-from"),
    min_duration: float = _option("min_duration"),
    max_duration: float = _option("max_duration"),
    max_batch_seconds: float = _option("max_batch_seconds"),
    max_batch_utterances: int = _option("max_batch_utterances"),
    buckets: int = _option("buckets"),
    accumulate: int = _option("accumulate"),
    workers: int = _option("workers"),
    speeds: str = _option("speeds", "--speeds"),
    freq_masks: int = _option("freq_masks"),
    freq_mask_width: int = _option("freq_mask_width"),
    time_masks: int = _option("time_masks"),
    time_mask_width: int = _option("time_mask_width"),
    time_mask_ratio: float = _option("time_mask_ratio"),
    freq_warp: float = _option("freq_warp"),
    envelope_db: float = _option("envelope_db"),
    noise_prob: float = _option("noise_prob"),
    noise_snr: str = _option("noise_snr", "--noise-snr"),
    reverb_prob: float = _option("reverb_prob"),
    reverb_rt60: str = _option("reverb_rt60", "--reverb-rt60"),
    lr: float = _option("lr"),
    weight_decay: float = _option("weight_decay"),
    betas: str = _option("betas", "--betas"),
    eps: float = _option("eps"),
    warmup_steps: int = _option("warmup_steps"),
    max_steps: int = _option("max_steps"),
    schedule: Schedule = _option("schedule"),
    min_lr_ratio: float = _option("min_lr_ratio"),
    clip_grad_norm: float = _option("clip_grad_norm"),
    ctc_weight: float = _option("ctc_weight"),
    label_smoothing: float = _option("label_smoothing"),
    distill_targets: str = _option("distill_targets", "--distill-targets"),
    distill_weight: float = _option("distill_weight"),
    distill_layer: int = _option("distill_layer"),
    device: str = _option("device"),
    backend: str = _option("backend"),
    bf16: bool = _option("bf16", "--bf16/--no-bf16"),
    cpu_bf16: bool = _option("cpu_bf16", "--cpu-bf16/--no-cpu-bf16"),
    threads: int = _option("threads"),
    seed: int = _option("seed"),
    log_every: int = _option("log_every"),
    save_every: int = _option("save_every"),
    keep_every: int = _option("keep_every"),
    val_every: int = _option("val_every"),
    val_attention: bool = _option("val_attention", "--val-attention/--no-val-attention"),
) -> None:
    """Train a model on a JSONL manifest or lhotse CutSet; rerunning the same command resumes from the run folder.

    Under torchrun (WORLD_SIZE > 1, e.g. `torchrun --nnodes 1:4 --nproc-per-node 8 --rdzv-backend c10d
    --rdzv-endpoint HOST:29400 --max-restarts 3 $(which samba) train run ...`) every process trains on its share
    of each epoch's batches (DDP); a restarted job resumes from the run folder's state.pt.
    """
    given = {k: v for k, v in locals().items() if k not in ("manifest", "tokenizer") and v is not None}
    given.update(
        speeds=_floats("speeds", speeds),
        betas=_floats("betas", betas),
        noise_snr=_floats("noise_snr", noise_snr),
        reverb_rt60=_floats("reverb_rt60", reverb_rt60),
    )
    given = {k: v for k, v in given.items() if v is not None}
    from samba_cli.train.loop import train

    try:
        config = TrainConfig(train_manifest=manifest, tokenizer=str(tokenizer), **given)
        train(config)
    except (ValueError, FileNotFoundError) as exc:
        raise SambaError(original_message(exc)) from exc
    except KeyboardInterrupt:  # stopped by Ctrl-C or SIGTERM after a checkpoint: exit as transcribe does
        raise typer.Exit(130) from None


def _texts(paths: list[Path], out) -> int:
    """Write the transcripts of JSONL manifests (their "text" fields), lhotse CutSets (their supervisions' texts)
    and plain text files to ``out``."""
    from samba_cli.train.cuts import cut_text, is_cutset, open_cuts

    lines = 0
    for path in paths:
        if is_cutset(str(path)):
            for cut in open_cuts(str(path)):
                if cut_text(cut):
                    out.write(cut_text(cut) + "\n")
                    lines += 1
            continue
        with path.open(encoding="utf-8") as source:
            for line in source:
                text = json.loads(line)["text"] if path.suffix == ".jsonl" and line.strip() else line.strip()
                if text and text.strip():  # "text": null marks unlabelled audio
                    out.write(text.strip() + "\n")
                    lines += 1
    return lines


@app.command("average")
def average_command(
    models: list[Path] = typer.Argument(
        ..., help="model folders of one run (e.g. runs/NAME/snapshots/step-*)"
    ),
    out: Path = typer.Option(..., "--out", help="the model folder to write"),
    float16: bool = typer.Option(False, "--float16", help="store the averaged weights in float16"),
) -> None:
    """Average the weights of several checkpoints (same model config and tokenizer) into one model folder."""
    import torch

    from samba_cli.train.average import average_checkpoints

    average_checkpoints(models, out, dtype=torch.float16 if float16 else None)
    typer.echo(f"{out}: mean of {len(models)} checkpoints")


@app.command("grow")
def grow_command(
    model: Path = typer.Argument(..., help="the model folder to grow (config.json, model.safetensors)"),
    out: Path = typer.Option(..., "--out", help="the model folder to write"),
    encoder_layers: int = typer.Option(None, "--encoder-layers", help="encoder blocks of the grown model"),
    decoder_layers: int = typer.Option(None, "--decoder-layers", help="decoder blocks of the grown model"),
) -> None:
    """Make a trained model deeper without changing its output: each new block is a copy of the block below it
    with zeroed output projections. Train on from the result with `samba train run --init-from`."""
    from samba_cli.model.checkpoint import read_config
    from samba_cli.train.grow import grow_checkpoint

    if encoder_layers is None and decoder_layers is None:
        raise typer.BadParameter(
            "give --encoder-layers, --decoder-layers or both", param_hint="'--encoder-layers'"
        )
    try:
        grow_checkpoint(model, out, encoder_layers, decoder_layers)
    except OptionError as error:
        raise typer.BadParameter(str(error), param_hint=f"'{error.option}'") from None
    grown = read_config(out)
    typer.echo(f"{out}: {grown.encoder_layers} encoder and {grown.decoder_layers} decoder layers")


@app.command("tokenizer")
def tokenizer_command(
    inputs: list[Path] = typer.Argument(
        ..., help="JSONL manifests (their text fields), lhotse CutSets or text files, one line each"
    ),
    out: Path = typer.Option(Path("tokenizer.model"), "--out", help="the sentencepiece model to write"),
    vocab_size: int = typer.Option(256, help="pieces, including unk, bos, eos, pad (the model's vocab_size)"),
    model_type: str = typer.Option("unigram", help="sentencepiece model type: unigram or bpe"),
) -> None:
    """Train a sentencepiece tokenizer (unk 0, bos 1, eos 2, pad 3) on transcripts."""
    for path in inputs:
        if not path.exists():
            raise SambaError(f"{path}: file not found")
    if out.suffix != ".model":
        raise SambaError(f"{out}: the tokenizer file name must end in .model")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as text:
        try:
            lines = _texts(inputs, text)
        except (ValueError, FileNotFoundError) as exc:
            raise SambaError(original_message(exc)) from exc
        text.flush()
        try:
            model = train_tokenizer(text.name, out.with_suffix(""), vocab_size, model_type)
        except RuntimeError as exc:
            raise SambaError(f"sentencepiece failed on {lines} lines: {exc}") from exc
    typer.echo(f"{model}: {vocab_size} pieces from {lines} lines")
