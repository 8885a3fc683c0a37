"""Speed and memory benchmark: Samba-ASR against a Whisper model of the same parameter count.

Both models have random weights, so neither can decode real text: each is forced to decode a fixed token budget
(``tokens_per_second`` x the seconds of audio in a segment or chunk) with end-of-text suppressed. The work done is
then the work of a real transcription of speech at that token rate.

Cases
    end to end   generated long audio -> tokens on the host; RTFx = audio seconds / wall seconds. Each case runs
                 in a fresh child process, so its peak memory (``ru_maxrss``; on CUDA ``max_memory_allocated``) is
                 its own.
                 samba:   windows (VAD off by default) -> log-mel -> encoder + CTC head -> CTC segments
                          (``split_segments``, the pipeline's) -> forced decoding in batches, through the pipeline's
                          decode steppers (CUDA graphs on CUDA).
                 whisper: 30 s chunks with the transformers ASR pipeline's default stride (chunk / 6 on each
                          side) -> WhisperFeatureExtractor per chunk (on the CPU, as the pipeline does) -> chunks
                          batched -> encoder -> forced decoding with the transformers KV cache.
    encoder      encoder time against audio length: samba in one long window, whisper in 30 s windows batched.
    step         decoder step latency at batch 1 and 16 (eager; samba also under a CUDA graph on CUDA).

Modules
    options         BenchOptions, presets, constants, device and dtype
    cases           Case, the plan of a run, generated speech-like audio
    forced          what both runners share: stage clock, runner interface, forced token picking
    samba_runner    samba: end to end, encoder call, decoder step timing
    whisper_runner  the size-matched Whisper model, chunking, its forced decode loop
    child           one case in this process or a fresh child process (``run_one``), peak memory
    run_one         the child process: ``python -m benchmarks.size_matched.run_one CASE.json RESULT.json``
    results         result dataclasses and the environment of a run
    report          targets check, results.json, results.md, PNG plots
    run             run_bench: every case within a time budget
    __main__        the command line: ``python -m benchmarks.size_matched [options]``, from the repository root

Run ``python -m benchmarks.size_matched --help`` (or ``benchmarks/run_cpu.sh``), or call :func:`run_bench`.
"""

from .cases import Case, plan, synthetic_speech
from .child import run_case, run_case_in_child
from .options import (
    BENCH_PRESETS,
    DTYPES,
    MODELS,
    WHISPER_CHUNK_SECONDS,
    BenchOptions,
    resolve_preset,
    token_budget,
)
from .report import check_targets, plot, to_markdown, write_results
from .results import (
    BenchResults,
    EncoderResult,
    EndToEndResult,
    Environment,
    ModelInfo,
    SkippedCase,
    StepResult,
    TargetCheck,
    environment,
)
from .run import run_bench
from .samba_runner import SambaRunner, build_samba
from .whisper_runner import (
    WhisperRunner,
    build_whisper,
    iter_chunks,
    matched_whisper_layers,
    whisper_config,
)

__all__ = [
    "BENCH_PRESETS",
    "DTYPES",
    "MODELS",
    "WHISPER_CHUNK_SECONDS",
    "BenchOptions",
    "BenchResults",
    "Case",
    "EncoderResult",
    "EndToEndResult",
    "Environment",
    "ModelInfo",
    "SambaRunner",
    "SkippedCase",
    "StepResult",
    "TargetCheck",
    "WhisperRunner",
    "build_samba",
    "build_whisper",
    "check_targets",
    "environment",
    "iter_chunks",
    "matched_whisper_layers",
    "plan",
    "plot",
    "resolve_preset",
    "run_bench",
    "run_case",
    "run_case_in_child",
    "synthetic_speech",
    "to_markdown",
    "token_budget",
    "whisper_config",
    "write_results",
]
