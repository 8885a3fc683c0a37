"""What a run reports: the targets check, results.json, results.md and the PNG plots."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .results import (
    BenchResults,
    EncoderResult,
    EndToEndResult,
    Environment,
    SkippedCase,
    StepResult,
    TargetCheck,
)

logger = logging.getLogger(__name__)


def _at(results: Iterable[EndToEndResult], model: str, preset: str, minutes: float) -> EndToEndResult | None:
    return next(
        (
            r
            for r in results
            if (r.model, r.preset) == (model, preset) and abs(r.audio_seconds - 60 * minutes) < 1
        ),
        None,
    )


def check_targets(env: Environment, results: list[EndToEndResult]) -> list[TargetCheck]:
    """The issue's targets, reported and never enforced."""
    checks = []
    presets = sorted({r.preset for r in results})
    for preset in presets:
        samba, whisper = _at(results, "samba", preset, 60), _at(results, "whisper", preset, 60)
        name = f"GPU: samba {preset} >= 2x Whisper RTFx at 60 min"
        if not env.device.startswith("cuda"):
            checks.append(TargetCheck(name, "not applicable", "CPU run"))
        elif samba is None or whisper is None:
            checks.append(TargetCheck(name, "not measured", "needs both 60 min cases"))
        else:
            ratio = samba.rtfx / whisper.rtfx
            detail = f"{samba.rtfx:.1f}x vs {whisper.rtfx:.1f}x: ratio {ratio:.2f}"
            checks.append(TargetCheck(name, "met" if ratio >= 2 else "not met", detail))
    for model, preset in sorted({(r.model, r.preset) for r in results}):
        name = f"{model} {preset}: peak memory flat from 10 to 60 min (growth < 10%)"
        ten, sixty = _at(results, model, preset, 10), _at(results, model, preset, 60)
        if ten is None or sixty is None or ten.peak_bytes is None or sixty.peak_bytes is None:
            checks.append(TargetCheck(name, "not measured", "needs both the 10 and 60 min cases"))
            continue
        growth = (sixty.peak_bytes - ten.peak_bytes) / ten.peak_bytes
        detail = f"{_mib(ten.peak_bytes)} -> {_mib(sixty.peak_bytes)} MiB ({100 * growth:+.1f}%)"
        checks.append(TargetCheck(name, "met" if growth < 0.10 else "not met", detail))
    tiny = [r for r in results if (r.model, r.preset) == ("samba", "tiny")]
    name = "CPU: samba tiny >= 20x real time on 2 cores"
    if env.device != "cpu":
        checks.append(TargetCheck(name, "not applicable", f"run on {env.device}"))
    elif not tiny:
        checks.append(TargetCheck(name, "not measured", "no samba tiny case"))
    else:
        longest = max(tiny, key=lambda r: r.audio_seconds)
        detail = (
            f"{longest.rtfx:.1f}x at {longest.audio_seconds / 60:g} min with {env.torch_threads} torch threads "
            f"on {env.cpu_count} CPUs"
        )
        checks.append(TargetCheck(name, "met" if longest.rtfx >= 20 else "not met", detail))
    return checks


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _provenance(env: Environment) -> str:
    return (
        f"`{env.command}` on {env.device} ({env.device_name}, {env.cpu_count} CPUs, {env.torch_threads} threads), "
        f"{env.dtype}, torch {env.torch}, transformers {env.transformers or 'not installed'}, "
        f"commit {env.git_commit or 'unknown'}, {env.date}"
    )


E2E_HEADER = "model|preset|audio (min)|wall (s)|RTFx|features / encoder / decode (s)|windows|rows|tokens|"
E2E_HEADER += "peak RSS (MiB)|peak CUDA (MiB)|CUDA graphs"


def _e2e_row(r: EndToEndResult) -> list[str]:
    stages = f"{r.features_seconds:.1f} / {r.encoder_seconds:.1f} / {r.decode_seconds:.1f}"
    return [r.model, r.preset, f"{r.audio_seconds / 60:.3g}", f"{r.wall_seconds:.1f}", f"{r.rtfx:.1f}", stages,
            str(r.windows), str(r.segments), str(r.tokens), _mib(r.peak_rss_bytes), _mib(r.peak_cuda_bytes),
            "yes" if r.cuda_graphs else "no"]  # fmt: skip


def _encoder_row(r: EncoderResult) -> list[str]:
    speed = f"{r.audio_seconds / r.seconds:.1f}"
    return [r.model, r.preset, f"{r.audio_seconds:g}", str(r.windows), f"{r.seconds:.3f}", speed]


def _step_row(r: StepResult) -> list[str]:
    return [r.model, r.preset, str(r.batch), str(r.frames), r.mode, f"{r.ms_per_step:.2f}"]


def _skipped_row(s: SkippedCase) -> list[str]:
    return [s.kind, s.model, s.preset, f"{s.audio_seconds / 60:.3g}", s.reason]


def _section(
    title: str, header: list[str], rows: list[list[str]], note: str = "", figure: str = ""
) -> list[str]:
    """A results.md section: its title, an optional note, a table, an optional figure."""
    return [
        f"## {title}",
        "",
        *([note, ""] if note else []),
        *_table(header, rows),
        *(["", figure] if figure else []),
    ]


def to_markdown(results: BenchResults) -> str:
    env, opt = results.environment, results.options
    sections = [
        _section(
            "Models",
            ["model", "sized for", "parameters", "shape"],
            [[m.model, m.preset, f"{m.parameters / 1e6:.2f} M", m.shape] for m in results.models],
        ),
        _section(
            "End to end",
            E2E_HEADER.split("|"),
            [_e2e_row(r) for r in results.end_to_end],
            note="RTFx = audio seconds / wall seconds (higher is faster). Peak memory is the case's own child process.",
            figure="![RTFx and peak memory against audio length](rtfx.png)",
        ),
        _section(
            "Encoder only",
            ["model", "preset", "audio (s)", "windows", "seconds", "x real time"],
            [_encoder_row(r) for r in results.encoder],
            note="samba: one window of the whole length (batch 1); whisper: 30 s windows, batched.",
            figure="![Encoder time against audio length](encoder.png)",
        ),
        _section(
            "Decoder step",
            ["model", "preset", "batch", "encoder frames", "mode", "ms / step"],
            [_step_row(r) for r in results.step],
            note="One forced step (decoder step, special tokens suppressed, argmax); whisper's KV cache is filled to "
            "the middle of a 30 s chunk's budget.",
        ),
        _section(
            "Targets (reported, not enforced)",
            ["target", "status", "detail"],
            [[t.target, t.status, t.detail] for t in results.targets],
        ),
    ]
    if results.skipped:
        header = ["kind", "model", "preset", "audio (min)", "reason"]
        sections.append(_section("Not run", header, [_skipped_row(s) for s in results.skipped]))
    lines = [
        "# Samba-ASR against a size-matched Whisper",
        "",
        f"Run: {_provenance(env)}. Total {results.total_seconds:.0f} s.",
        "",
        f"Random weights, forced decoding of {opt.tokens_per_second:g} tokens per second of audio with end-of-text "
        f"suppressed; decode batch {opt.batch_size}; samba windows {opt.window_seconds:g} s, VAD "
        f"{'on' if opt.vad else 'off'}; whisper 30 s chunks with {opt.whisper_stride_seconds:g} s stride per side.",
    ]
    for section in sections:
        lines += ["", *section]
    return "\n".join(lines) + "\n"


def _series(rows: Iterable, x: Callable, y: Callable) -> Iterator[tuple[str, str, list, list]]:
    """(label, line style, xs, ys) per model and preset, sorted by audio length."""
    for model, preset in sorted({(r.model, r.preset) for r in rows}):
        own = sorted(
            (r for r in rows if (r.model, r.preset) == (model, preset)), key=lambda r: r.audio_seconds
        )
        yield (
            f"{model} ({preset})",
            "o-" if model == "samba" else "s--",
            [x(r) for r in own],
            [y(r) for r in own],
        )


def _minutes(result: EndToEndResult) -> float:
    return result.audio_seconds / 60


def _save(fig, env: Environment, path: Path) -> Path:
    """Footer with the provenance (command, device, versions, date), then save."""
    import textwrap

    fig.text(0.01, 0.01, "\n".join(textwrap.wrap(_provenance(env), 150)), fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)
    return path


def plot(results: BenchResults, directory: Path) -> list[Path]:
    """rtfx.png (RTFx and peak memory against audio length, log x) and encoder.png; [] without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results.end_to_end:
        fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.8))
        for label, style, xs, ys in _series(results.end_to_end, _minutes, lambda r: r.rtfx):
            speed.plot(xs, ys, style, label=label)
        for label, style, xs, ys in _series(
            results.end_to_end, _minutes, lambda r: (r.peak_bytes or 0) / 2**20
        ):
            memory.plot(xs, ys, style, label=label)
        speed.set(xscale="log", xlabel="audio (minutes)", ylabel="RTFx (audio s / wall s)", title="Speed")
        memory.set(xscale="log", xlabel="audio (minutes)", ylabel="peak memory (MiB)", title="Peak memory")
        for ax in (speed, memory):
            ax.set_ylim(bottom=0)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        written.append(_save(fig, results.environment, directory / "rtfx.png"))
        plt.close(fig)
    if results.encoder:
        fig, ax = plt.subplots(figsize=(6.5, 4.8))
        for label, style, xs, ys in _series(results.encoder, lambda r: r.audio_seconds, lambda r: r.seconds):
            ax.plot(xs, ys, style, label=label)
        ax.set(xscale="log", yscale="log", xlabel="audio (s)", ylabel="encoder (s)", title="Encoder time")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, results.environment, directory / "encoder.png"))
        plt.close(fig)
    return written


def write_results(results: BenchResults, directory: Path) -> list[Path]:
    """results.json, results.md and the plots in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "results.json", directory / "results.md"
    json_path.write_text(json.dumps(results.to_dict(), indent=2) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(results), encoding="utf-8")
    return [json_path, md_path, *plot(results, directory)]
