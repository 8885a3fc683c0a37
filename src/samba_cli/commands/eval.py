"""`samba eval MODEL MANIFEST`: WER/CER after English normalisation, x real time, a per-utterance JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer

from samba_cli.ctc import auto_search_workers
from samba_cli.errors import SambaError, original_message
from samba_cli.model import load_checkpoint
from samba_cli.model.checkpoint import TOKENIZER_FILE, read_config_file
from samba_cli.search import DecodeOptions, resolve_decoding
from samba_cli.tokenizer import Tokenizer
from samba_cli.train.data import read_manifest
from samba_cli.train.evaluate import evaluate
from samba_cli.writers import write_atomically


def eval_command(
    model: Path = typer.Argument(
        ..., help="checkpoint folder: config.json, model.safetensors, tokenizer.model"
    ),
    manifest: Path = typer.Argument(..., help="JSONL manifest with audio, text, duration per line"),
    decoder: str = typer.Option(
        "auto",
        help="attention (Mamba decoder), ctc (CTC, fastest) or auto (the model's default_decoder)",
    ),
    beam_size: int = typer.Option(
        1, min=1, help="beam width (1: greedy; CTC with a language model: 32 when 1)"
    ),
    lm: str = typer.Option(
        "auto",
        metavar="ARPA|auto|none",
        help="word n-gram language model of CTC decoding; auto: the model folder's lm.arpa.gz, if any",
    ),
    lm_weight: float | None = typer.Option(
        None, help="language-model weight", show_default="the model's, else 0.5"
    ),
    word_bonus: float | None = typer.Option(
        None, help="score added per word with a language model", show_default="the model's, else 2.0"
    ),
    oov_penalty: float | None = typer.Option(
        None,
        help="score taken off each word outside the language model's vocabulary",
        show_default="the model's, else 0",
    ),
    lexicon: str = typer.Option(
        "auto",
        metavar="FILE|auto|none",
        help="word list accepted beside the language model's vocabulary; auto: the model folder's lexicon.txt.gz "
        "when its language model is used",
    ),
    lexicon_penalty: float | None = typer.Option(
        None,
        help="score taken off each lexicon word outside the language model's vocabulary (instead of the OOV "
        "penalty)",
        show_default="the model's, else 0",
    ),
    rescore_weight: float | None = typer.Option(
        None,
        min=0.0,
        help="CTC beam search: weight of the attention decoder's score when it reranks the final beams (0: off)",
        show_default="the model's, else 0",
    ),
    attention_beam: int | None = typer.Option(
        None,
        min=0,
        help="CTC beam search with rescoring: width of an attention beam search whose hypotheses join the final "
        "beams as rescoring candidates (0: off)",
        show_default="the model's, else 0",
    ),
    report: Path | None = typer.Option(
        None, help="per-utterance JSON report", show_default="eval-<manifest name>-<decoder>[-lm].json"
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    backend: str = typer.Option("auto", help="SSD backend: auto, torch, fused"),
    batch_seconds: float = typer.Option(300.0, help="padded audio seconds decoded together"),
    workers: int = typer.Option(0, help="processes reading audio and computing features"),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)"),
    search_workers: int = typer.Option(
        0,
        min=0,
        help="processes running the CTC beam searches of a batch (1: none; 0: one per CPU core, at most 4)",
    ),
    group_by: str | None = typer.Option(
        None, metavar="FIELD", help="also score each value of this manifest field apart (e.g. voice, engine)"
    ),
) -> None:
    """Transcribe a manifest and score it: WER and CER after Whisper's English normaliser, and speed."""
    if threads > 0:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        metadata = read_config_file(model).get("metadata") or {}
        if decoder == "auto":
            decoder = metadata.get("default_decoder", "attention")
        options = DecodeOptions(
            decoder=decoder,
            beam_size=beam_size,
            lm=None if lm == "none" else lm,
            lm_weight=lm_weight,
            word_bonus=word_bonus,
            oov_penalty=oov_penalty,
            lexicon=None if lexicon == "none" else lexicon,
            lexicon_penalty=lexicon_penalty,
            rescore_weight=rescore_weight,
            attention_beam=attention_beam,
            search_workers=search_workers or auto_search_workers(),
        )
        options = resolve_decoding(options, model, metadata)
        utterances = read_manifest(manifest, fields=(group_by,) if group_by else ())
        labels = [u.labels[group_by] for u in utterances] if group_by else None
    except (ValueError, FileNotFoundError) as exc:
        raise SambaError(str(exc)) from exc
    net = load_checkpoint(model, device=device, backend=backend)
    tokenizer = Tokenizer(model / TOKENIZER_FILE)
    try:
        result = evaluate(
            net,
            tokenizer,
            utterances,
            options,
            batch_seconds,
            workers,
            model_name=str(model),
            manifest_name=str(manifest),
        )
    except ValueError as exc:  # an unreadable audio file (read in a DataLoader worker with --workers)
        raise SambaError(original_message(exc)) from exc
    report = report or Path(f"eval-{manifest.stem}-{decoder}{'-lm' if options.lm else ''}.json")
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
