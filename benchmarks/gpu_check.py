"""GPU check (issue 2): fused-kernel tests, parity and timings of the ~100M-parameter ``base`` preset in bfloat16.

On a CUDA machine, from the repository root:

    python benchmarks/gpu_check.py            # JSON also written to $OUT/gpu_check.json when OUT is set

It runs ``pytest -m cuda tests/test_cuda.py``, then prints
  - fused vs torch parity, max abs error of the Mamba-2 mixer forward and step (base preset shapes);
  - encoder forward time for 1, 10 and 60 minutes of audio (one window, batch 1);
  - decoder step time, eager and replayed from a CUDA graph, at batch 1, 16 and 64, with the graphed logits
    compared to the eager ones (the graph capture cannot be tested without a GPU).
Every check catches its own errors, prints them and goes on. The whole run takes well under 5 minutes on an H100.
mamba-ssm's import of its Mamba-1 extension is answered with an empty ``selective_scan_cuda`` module (see
shared/notes/gpu-findings.md).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINUTES = (1, 10, 60)
STEP_BATCHES = (1, 16, 64)
STEP_COUNT = 100


def _prepare_imports() -> None:
    """samba_cli from src/ when not installed; an empty selective_scan_cuda when mamba-ssm lacks it."""
    try:
        import samba_cli  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    try:
        import selective_scan_cuda  # noqa: F401
    except ImportError:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")


_prepare_imports()

import torch  # noqa: E402

from samba_cli.decoding.stepper import EagerStepper, StaticStepper, bucket  # noqa: E402
from samba_cli.model import SambaASR, preset  # noqa: E402
from samba_cli.model.encoder import mixer_kwargs  # noqa: E402
from samba_cli.model.mamba import Mamba2Mixer  # noqa: E402
from samba_cli.ops import fused_available, get_ops  # noqa: E402


def decoder_frames(model: SambaASR) -> int:
    """Encoder frames of the longest segment the pipeline hands the decoder (576 for 40 ms frames)."""
    try:  # the pipeline imports sentencepiece and more, which a bare GPU machine may lack
        from samba_cli.options import SegmentOptions
        from samba_cli.pipeline import pipeline_decoder_frames
    except ImportError as exc:
        print(f"samba_cli.pipeline not importable ({exc}): 576 decoder frames assumed")
        return 576
    return pipeline_decoder_frames(model, SegmentOptions())


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "mamba_ssm": _version("mamba-ssm") or _version("mamba_ssm"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "fused_available": fused_available(),
    }


def run_pytest() -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    print("\n".join(tail))
    return {"returncode": proc.returncode, "tail": tail}


def _mixer_pair(dtype: torch.dtype) -> tuple[Mamba2Mixer, Mamba2Mixer]:
    kwargs = mixer_kwargs(preset("base"))
    reference = Mamba2Mixer(**kwargs).cuda().to(dtype)
    fused = Mamba2Mixer(**kwargs).cuda().to(dtype)
    fused.load_state_dict(reference.state_dict())
    fused.ops = get_ops("fused")
    return reference, fused


@torch.inference_mode()
def parity() -> dict:
    """Max abs error fused vs torch, relative to the reference's largest output."""
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        reference, fused = _mixer_pair(dtype)
        u = torch.randn(4, 2048, reference.d_model, device="cuda", dtype=dtype)
        ref_y, fused_y = reference(u[:2]).float(), fused(u[:2]).float()
        steps_ref, steps_fused = [], []
        s_ref = reference.allocate_state(4, u.device, dtype)
        s_fused = fused.allocate_state(4, u.device, dtype)
        for t in range(64):
            steps_ref.append(reference.step(u[:, t], s_ref).float())
            steps_fused.append(fused.step(u[:, t], s_fused).float())
        step_ref, step_fused = torch.stack(steps_ref), torch.stack(steps_fused)
        name = str(dtype).removeprefix("torch.")
        out[name] = {
            "forward_max_abs_error": float((fused_y - ref_y).abs().max()),
            "forward_max_abs_reference": float(ref_y.abs().max()),
            "step_max_abs_error": float((step_fused - step_ref).abs().max()),
            "step_max_abs_reference": float(step_ref.abs().max()),
        }
        print(f"parity {name}: {out[name]}")
    return out


def _base_model() -> SambaASR:
    torch.manual_seed(0)
    model = SambaASR(preset("base")).eval().cuda().to(torch.bfloat16)
    model.set_backend("fused" if fused_available() else "torch")
    return model


def _best_ms(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 1000 * best


@torch.inference_mode()
def encoder_times(model: SambaASR) -> list[dict]:
    rows = []
    for minutes in MINUTES:
        try:
            feats = torch.randn(1, 80, minutes * 6000 + 1, device="cuda", dtype=torch.bfloat16)
            model.encode(feats)  # warm-up at this length (Triton autotuning)
            torch.cuda.reset_peak_memory_stats()
            ms = _best_ms(lambda feats=feats: model.encode(feats))
            row = {
                "minutes": minutes,
                "backend": model.backend,
                "ms": ms,
                "x_real_time": 60_000 * minutes / ms,
                "peak_mib": torch.cuda.max_memory_allocated() / 2**20,
            }
            del feats
        except Exception as exc:  # report it and go on to the next length
            traceback.print_exc()
            row = {"minutes": minutes, "error": repr(exc)}
        print(f"encoder: {row}")
        rows.append(row)
        torch.cuda.empty_cache()
    return rows


def _steps(stepper, tokens: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``count`` steps -> their logits, copied out (a static stepper returns a view of its buffer)."""
    return [stepper.step(tokens).to(torch.float32, copy=True) for _ in range(count)]


def _ms_per_step(stepper, tokens: torch.Tensor) -> float:
    def run() -> None:
        for _ in range(STEP_COUNT):
            stepper.step(tokens)

    return _best_ms(run, 1) / STEP_COUNT


@torch.inference_mode()
def step_times(model: SambaASR) -> list[dict]:
    frames = decoder_frames(model)
    rows = []
    for batch in STEP_BATCHES:
        try:
            states = torch.randn(batch, frames, model.config.d_model, device="cuda", dtype=torch.bfloat16)
            lengths = torch.full((batch,), frames, device="cuda")
            tokens = torch.randint(4, model.config.vocab_size, (batch,), device="cuda")
            eager = EagerStepper(model, states, lengths)
            graphed = StaticStepper(model, bucket(batch), frames, use_graph=True).load(states, lengths)
            # Same tokens, fresh states: the graph must reproduce the eager logits step after step.
            check_eager = _steps(EagerStepper(model, states, lengths), tokens, 8)
            check_graph = _steps(graphed, tokens, 8)
            error = max(float((g - e).abs().max()) for g, e in zip(check_graph, check_eager, strict=True))
            graphed.load(states, lengths)
            _steps(eager, tokens, 3)
            row = {
                "batch": batch,
                "frames": frames,
                "backend": model.backend,
                "eager_ms": _ms_per_step(eager, tokens),
                "graph_ms": _ms_per_step(graphed, tokens),
                "graph_vs_eager_max_abs_logit_error": error,
                "logit_scale": float(check_eager[-1].abs().max()),
            }
        except Exception as exc:  # report it and go on to the next batch
            traceback.print_exc()
            row = {"batch": batch, "error": repr(exc)}
        print(f"step: {row}")
        rows.append(row)
    return rows


def _save(report: dict) -> None:
    """Write the report so far to $OUT/gpu_check.json (after every check: a run stopped at its time limit keeps
    the checks it finished)."""
    out = os.environ.get("OUT")
    if out:
        (Path(out) / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")


def _check(report: dict, name: str, fn: Callable[[], object]) -> None:
    print(f"\n== {name}")
    start = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as exc:  # one failed check must not stop the others
        traceback.print_exc()
        report[name] = {"error": repr(exc)}
    print(f"({name}: {time.perf_counter() - start:.1f} s)")
    _save(report)


def main() -> int:
    report: dict = {"environment": environment()}
    print(json.dumps(report["environment"], indent=2))
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    _check(report, "pytest_cuda", run_pytest)
    if fused_available():
        _check(report, "parity", parity)
    else:
        report["parity"] = {"error": "mamba-ssm is not installed: no fused backend to compare"}
        print(report["parity"]["error"])
    model = None
    try:
        model = _base_model()
        report["model"] = {"preset": "base", "parameters": model.num_parameters(), "backend": model.backend}
        print(
            f"\nbase preset: {model.num_parameters() / 1e6:.1f} M parameters, backend {model.backend}, bfloat16"
        )
    except Exception as exc:  # report it; the timings need the model
        traceback.print_exc()
        report["model"] = {"error": repr(exc)}
    if model is not None:
        _check(report, "encoder", lambda: encoder_times(model))
        _check(report, "step", lambda: step_times(model))
    _save(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
