"""`samba eval MODEL MANIFEST`: WER/CER after English normalisation, x real time, a per-utterance JSON report."""

from __future__ import annotations

import dataclasses
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
from samba_cli.options import TranscribeOptions, resolve_decode
from samba_cli.results import transcript_text
from samba_cli.train.data import Utterance, read_manifest
from samba_cli.train.evaluate import LONG_FORM_SECONDS, evaluate


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
    window_longer_than: float = typer.Option(
        LONG_FORM_SECONDS,
        min=0.0,
        callback=finite,
        metavar="SECONDS",
        help="utterances longer than this are transcribed in windows cut at pauses, as `samba transcribe` does; "
        "shorter ones are decoded whole, in batches",
    ),
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
    # long recordings go through the transcription pipeline (windows, segments) with the same decoding options
    windowed_options = dataclasses.replace(
        transcriber.resolve_options(TranscribeOptions()), decode=options, word_timestamps=False
    )

    def long_form(utterance: Utterance) -> str:
        segments, _ = transcriber.transcribe(str(utterance.audio), windowed_options)
        return transcript_text(segments)

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
            long_form=long_form,
            long_form_seconds=window_longer_than,
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
    if summary["windowed_utterances"]:
        typer.echo(
            f"  {summary['windowed_utterances']} utterances longer than {window_longer_than:g} s transcribed in "
            "windows, as `samba transcribe` does"
        )
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
