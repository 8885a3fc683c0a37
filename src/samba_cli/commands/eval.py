"""`samba eval MODEL MANIFEST`: WER/CER after English normalisation, x real time, a per-utterance JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from samba_cli.api import load_model
from samba_cli.atomic import write_atomically
from samba_cli.commands.options import (
    CTCArgs,
    DType,
    SearchArgs,
    decode_options,
    device_parameter,
    finite,
    usage_error,
    with_groups,
)
from samba_cli.errors import BackendError, SambaError, original_message
from samba_cli.options import resolve_decode
from samba_cli.train.data import read_manifest
from samba_cli.train.evaluate import evaluate


@with_groups
def eval_command(
    model: str = typer.Argument(
        ...,
        help="checkpoint folder (config.json, model.safetensors, tokenizer.model), Hub repo id or bundled model",
    ),
    manifest: Path = typer.Argument(..., help="JSONL manifest with audio, text, duration per line"),
    *,
    search: SearchArgs,
    ctc: CTCArgs,
    report: Path | None = typer.Option(
        None, help="per-utterance JSON report", show_default="eval-<manifest name>-<decoder>[-lm].json"
    ),
    device: str = device_parameter(),
    backend: str = typer.Option("auto", help="SSD backend: auto, torch, fused"),
    dtype: DType = typer.Option(
        DType.float32, case_sensitive=False, help="weights' precision (auto: as `samba transcribe` runs)"
    ),
    batch_seconds: float = typer.Option(
        300.0, min=1.0, callback=finite, help="padded audio seconds decoded together"
    ),
    workers: int = typer.Option(0, help="processes reading audio and computing features"),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)"),
    group_by: str | None = typer.Option(
        None, metavar="FIELD", help="also score each value of this manifest field apart (e.g. voice, engine)"
    ),
) -> None:
    """Transcribe a manifest and score it: WER and CER after Whisper's English normaliser, and speed."""
    # float32 by default on every device: the scores of `samba eval` do not depend on the device's default dtype
    try:
        transcriber = load_model(
            model, device=device, dtype=dtype.value, backend=backend, threads=threads or None
        )
    except BackendError as error:  # a device or SSD backend this machine does not have
        raise usage_error(error) from None
    try:
        options = resolve_decode(decode_options(search, ctc), transcriber.facts, transcriber.device.type)
        utterances = read_manifest(manifest, fields=(group_by,) if group_by else ())
        labels = [u.labels[group_by] for u in utterances] if group_by else None
    except (ValueError, FileNotFoundError) as exc:
        raise SambaError(str(exc)) from exc
    if not utterances:
        raise SambaError(f"{manifest}: the manifest holds no utterances; nothing to score")
    try:
        result = evaluate(
            transcriber.model,
            transcriber.tokenizer,
            utterances,
            options,
            batch_seconds,
            workers,
            model_name=str(model),
            manifest_name=str(manifest),
        )
    except ValueError as exc:  # an unreadable audio file (read in a DataLoader worker with --workers)
        raise SambaError(original_message(exc)) from exc
    report = report or Path(f"eval-{manifest.stem}-{options.decoder}{'-lm' if options.ctc.lm else ''}.json")
    document = result.to_dict()
    groups = {} if labels is None else result.group_summaries(labels)
    if labels is not None:
        document["group_by"], document["groups"] = group_by, groups
        for entry, label in zip(document["results"], labels, strict=True):
            entry[group_by] = label
    try:
        write_atomically(report, lambda stream: stream.write(json.dumps(document, indent=2) + "\n"))
    except OSError as exc:
        raise SambaError(f"{report}: cannot write the report: {exc.strerror or exc}") from exc
    summary = result.summary()
    typer.echo(
        f"{manifest}: WER {100 * summary['wer']:.2f}% ({summary['word_errors']}/{summary['words']}) "
        f"CER {100 * summary['cer']:.2f}% | {summary['utterances']} utterances, "
        f"{summary['audio_seconds'] / 3600:.2f} h at {summary['x_real_time']:.1f}x real time | report {report}"
    )
    if summary.get("lm"):
        typer.echo(
            f"  CTC beam search of {summary['beam_size']} with {summary['lm']} "
            f"(weight {summary['lm_weight']}, word bonus {summary['word_bonus']}, "
            f"OOV penalty {summary['oov_penalty']})"
        )
    if summary.get("lexicon"):
        typer.echo(f"  lexicon {summary['lexicon']} (penalty {summary['lexicon_penalty']})")
    if summary.get("rescore_weight"):
        typer.echo(f"  final beams reranked by the attention decoder (weight {summary['rescore_weight']})")
    if summary.get("attention_beam"):
        typer.echo(f"  with the hypotheses of an attention beam search of {summary['attention_beam']}")
    for label, group in groups.items():
        typer.echo(
            f"  {group_by}={label or '(none)'}: WER {100 * group['wer']:.2f}% "
            f"({group['word_errors']}/{group['words']}) CER {100 * group['cer']:.2f}% | "
            f"{group['utterances']} utterances"
        )
