"""x real time and peak memory of samba against a Whisper model of the same size.

From the repository root: ``python -m benchmarks.size_matched [options]`` (``--help`` lists them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from . import BenchOptions, run_bench, write_results

PROGRAM = "python -m benchmarks.size_matched"  # how results name the command that made them


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not a comma-separated list of numbers", param_hint=name
        ) from exc
    if not values:
        raise typer.BadParameter("give at least one value", param_hint=name)
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def bench_command(
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    presets: str = typer.Option(
        "tiny,small", help="samba presets; each gets a Whisper of its parameter count"
    ),
    minutes: str = typer.Option("1,10,60", help="lengths of generated audio for the end-to-end cases"),
    models: str = typer.Option("samba,whisper", help="models to run"),
    out: Path = typer.Option(Path("bench-results"), help="folder for results.json, results.md and plots"),
    tokens_per_second: float = typer.Option(5.0, help="forced decoding budget per second of audio"),
    batch_size: int = typer.Option(16, help="segments or 30 s chunks decoded together"),
    window_seconds: float = typer.Option(300.0, help="samba window length"),
    vad: bool = typer.Option(False, help="samba VAD (off: the whisper pipeline has none)"),
    whisper_stride: float = typer.Option(5.0, help="overlap on each side of a whisper 30 s chunk, seconds"),
    encoder_seconds: str = typer.Option("30,120,300,600", help="audio lengths of the encoder-only cases"),
    step_batches: str = typer.Option("1,16", help="batch sizes of the decoder step cases"),
    step_count: int = typer.Option(64, help="timed decoder steps per step case"),
    repeats: int = typer.Option(3, help="timed repeats of each encoder case (best kept)"),
    dtype: str = typer.Option("auto", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16"),
    backend: str = typer.Option("auto", help="samba SSD backend: auto, torch, fused"),
    cuda_graphs: bool = typer.Option(True, help="replay samba decode steps from CUDA graphs on CUDA"),
    budget_minutes: float = typer.Option(
        0.0, help="skip end-to-end cases predicted to overrun (0: no budget)"
    ),
    threads: int = typer.Option(0, help="torch CPU threads per case (0: torch's default)"),
    isolate: bool = typer.Option(True, help="each case in a fresh process (needed for per-case peak memory)"),
) -> None:
    """Measure end-to-end RTFx and peak memory on generated long audio, encoder time and decoder step latency."""
    try:
        options = BenchOptions(
            device=device,
            presets=_names(presets),
            minutes=_floats(minutes, "--minutes"),
            models=_names(models),
            dtype=dtype,
            backend=backend,
            tokens_per_second=tokens_per_second,
            batch_size=batch_size,
            window_seconds=window_seconds,
            vad=vad,
            whisper_stride_seconds=whisper_stride,
            encoder_seconds=_floats(encoder_seconds, "--encoder-seconds"),
            step_batches=tuple(int(b) for b in _floats(step_batches, "--step-batches")),
            step_count=step_count,
            repeats=repeats,
            cuda_graphs=cuda_graphs,
            budget_seconds=60 * budget_minutes if budget_minutes > 0 else None,
            threads=threads or None,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    command = " ".join([PROGRAM, *sys.argv[1:]])
    results = run_bench(options, command=command, isolate=isolate, progress=typer.echo)
    for path in write_results(results, out):
        typer.echo(f"wrote {path}")
    for check in results.targets:
        typer.echo(f"target: {check.target}: {check.status} ({check.detail})")


if __name__ == "__main__":
    typer.run(bench_command)
