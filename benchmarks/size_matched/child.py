"""One case, measured in this process or in a fresh child process whose peak memory is the case's own.

The child is ``python -m benchmarks.size_matched.run_one CASE.json RESULT.json``, with the repository root on its
``PYTHONPATH`` so that it finds this package from any working folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from samba_cli.device import resolve_device, resolve_dtype

from .cases import Case, synthetic_speech
from .forced import Runner, StageClock, best_seconds, synchronize
from .options import BenchOptions
from .results import EncoderResult, EndToEndResult, ModelInfo, StepResult
from .samba_runner import SambaRunner, build_samba, samba_info
from .whisper_runner import WhisperRunner, build_whisper, whisper_info

REPO_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds benchmarks/


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _build(case: Case, options: BenchOptions) -> tuple[ModelInfo, Runner]:
    """The description of ``case``'s model, and its forced-transcription runner (which holds the model)."""
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    torch.manual_seed(options.seed)
    if case.model == "samba":
        model = build_samba(case.preset, device, dtype, options.backend)
        return samba_info(case.preset, model), SambaRunner(model, options)
    model = build_whisper(case.preset, device, dtype)
    return whisper_info(case.preset, model), WhisperRunner(model, options)


def warmup_seconds(options: BenchOptions, device: torch.device) -> float:
    """Audio for the warm-up run: on CUDA enough for full decode batches of both models (allocator, kernels)."""
    if options.warmup_seconds is not None:
        return options.warmup_seconds
    return 360.0 if device.type == "cuda" else 20.0


def run_end_to_end(case: Case, options: BenchOptions) -> tuple[ModelInfo, EndToEndResult]:
    """Build, warm up, then time ``case.audio_seconds`` of generated audio."""
    info, runner = _build(case, options)
    device = resolve_device(options.device)
    runner.prepare()
    runner.run(synthetic_speech(warmup_seconds(options, device), options.seed + 7), StageClock(device))
    synchronize(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    baseline_rss, baseline_cuda = _peak_rss_bytes(), torch.cuda.memory_allocated(device) if cuda else None
    clock = StageClock(device)
    start = time.perf_counter()
    counts = runner.run(synthetic_speech(case.audio_seconds, options.seed), clock)
    synchronize(device)
    wall = time.perf_counter() - start
    result = EndToEndResult(
        model=case.model,
        preset=case.preset,
        audio_seconds=case.audio_seconds,
        wall_seconds=wall,
        rtfx=case.audio_seconds / wall,
        features_seconds=clock.seconds.get("features", 0.0),
        encoder_seconds=clock.seconds.get("encoder", 0.0),
        decode_seconds=clock.seconds.get("decode", 0.0),
        windows=counts.windows,
        segments=counts.segments,
        tokens=counts.tokens,
        baseline_rss_bytes=baseline_rss,
        peak_rss_bytes=_peak_rss_bytes(),
        baseline_cuda_bytes=baseline_cuda,
        peak_cuda_bytes=torch.cuda.max_memory_allocated(device) if cuda else None,
        cuda_graphs=case.model == "samba" and cuda and options.cuda_graphs,
    )
    return info, result


def time_encoder(case: Case, runner: Runner) -> list[EncoderResult]:
    """Best-of-``repeats`` encoder seconds per audio length."""
    device, options = runner.param.device, runner.options
    results = []
    for k, seconds in enumerate(sorted(options.encoder_seconds)):
        call, windows = runner.encoder_call(seconds)
        if k == 0 or device.type == "cuda":  # warm-up; on CUDA per length, as Triton autotuning may key on it
            call()
        best = best_seconds(call, device, options.repeats)
        results.append(EncoderResult(case.model, case.preset, seconds, windows, best))
        del call
    return results


def run_micro(case: Case, options: BenchOptions) -> tuple[ModelInfo, list[EncoderResult], list[StepResult]]:
    info, runner = _build(case, options)
    with torch.inference_mode():
        encoder = time_encoder(case, runner)
        steps = runner.time_steps(case.preset)
    return info, encoder, steps


def run_case(case: Case, options: BenchOptions) -> dict:
    """Run one case in this process -> a JSON-ready dict (``model``, and ``end_to_end`` or ``encoder``/``step``)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    if case.kind == "end_to_end":
        info, result = run_end_to_end(case, options)
        return {"model": dataclasses.asdict(info), "end_to_end": dataclasses.asdict(result)}
    info, encoder, steps = run_micro(case, options)
    return {
        "model": dataclasses.asdict(info),
        "encoder": [dataclasses.asdict(r) for r in encoder],
        "step": [dataclasses.asdict(r) for r in steps],
    }


def run_case_in_child(case: Case, options: BenchOptions, timeout: float | None = None) -> dict:
    """Run one case in a fresh Python process (``run_one``), so its peak memory is its own."""
    with tempfile.TemporaryDirectory(prefix="samba-bench-") as tmp:
        spec, result = Path(tmp) / "case.json", Path(tmp) / "result.json"
        spec.write_text(
            json.dumps({"case": dataclasses.asdict(case), "options": dataclasses.asdict(options)})
        )
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.size_matched.run_one", str(spec), str(result)],
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not result.exists():
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise RuntimeError(f"case failed: {tail[0]}")
        return json.loads(result.read_text())


def child_main(spec_path: str, result_path: str) -> None:
    """The child's side of :func:`run_case_in_child`: read the case, run it, write its result."""
    spec = json.loads(Path(spec_path).read_text())
    data = run_case(Case(**spec["case"]), BenchOptions.from_dict(spec["options"]))
    Path(result_path).write_text(json.dumps(data))
