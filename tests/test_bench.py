"""Smoke tests of the benchmark harness at tiny sizes: the structure of its results, never its speed."""

import json

import numpy as np
import pytest
import torch

from benchmarks.size_matched import (
    BenchOptions,
    Case,
    iter_chunks,
    matched_whisper_layers,
    resolve_preset,
    run_bench,
    run_case_in_child,
    synthetic_speech,
    write_results,
)
from samba_cli.features import SAMPLE_RATE
from samba_cli.model import SambaASR

TINY_RUN = {
    "device": "cpu",
    "presets": ("micro",),
    "minutes": (3 / 60,),
    "encoder_seconds": (3.0,),
    "step_batches": (1, 2),
    "step_count": 2,
    "repeats": 1,
    "warmup_seconds": 1.0,
    "batch_size": 2,
}


def test_synthetic_speech_has_the_length_and_pauses():
    blocks = list(synthetic_speech(7.3, seed=1, block_seconds=0.5))
    audio = np.concatenate(blocks)
    assert audio.dtype == np.float32 and audio.size == round(7.3 * SAMPLE_RATE)
    assert max(b.size for b in blocks) == SAMPLE_RATE // 2
    frames = audio[: audio.size // 160 * 160].reshape(-1, 160)
    levels = np.sqrt((frames**2).mean(axis=1))
    assert (levels < 0.01).any() and (levels > 0.03).any()  # both pauses and speech
    again = np.concatenate(list(synthetic_speech(7.3, seed=1, block_seconds=2.0)))
    np.testing.assert_array_equal(audio, again)


@pytest.mark.parametrize("total", [10, 30, 31, 54, 56, 100])
def test_iter_chunks_matches_transformers_chunk_iter(total):
    audio = np.arange(total, dtype=np.float32)
    chunk, stride = 30, 5
    expected = []  # transformers' chunk_iter over the whole array
    for start in range(0, total, chunk - 2 * stride):
        piece = audio[start : start + chunk]
        if start == 0 or piece.size > stride:
            expected.append(piece)
        if start + chunk >= total:
            break
    blocks = np.array_split(audio, 7)
    got = list(iter_chunks(blocks, chunk, stride))
    assert [c.tolist() for c in got] == [c.tolist() for c in expected]


def test_bench_samba_only_writes_results(tmp_path):
    results = run_bench(BenchOptions(models=("samba",), **TINY_RUN), command="pytest", isolate=False)
    (e2e,) = results.end_to_end
    assert e2e.model == "samba" and e2e.audio_seconds == 3.0 and e2e.wall_seconds > 0
    assert e2e.rtfx == pytest.approx(e2e.audio_seconds / e2e.wall_seconds)
    assert e2e.tokens >= 15 - e2e.segments and e2e.segments >= 1  # 5 tokens/s, rounded per segment
    assert [(r.model, r.audio_seconds, r.windows) for r in results.encoder] == [("samba", 3.0, 1)]
    assert [(r.batch, r.mode) for r in results.step] == [(1, "eager"), (2, "eager")]
    assert all(r.ms_per_step > 0 for r in results.step)
    assert {t.status for t in results.targets} <= {"met", "not met", "not measured", "not applicable"}

    paths = write_results(results, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["environment"]["command"] == "pytest" and data["environment"]["torch"]
    assert data["end_to_end"][0]["model"] == "samba" and data["options"]["presets"] == ["micro"]
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "## End to end" in markdown and "| samba | micro |" in markdown
    assert {p.name for p in paths} >= {"results.json", "results.md"}


def test_bench_whisper_of_the_same_size(tmp_path):
    pytest.importorskip("transformers")
    options = BenchOptions(**{**TINY_RUN, "models": ("whisper",), "step_batches": (1,)})
    results = run_bench(options, command="pytest", isolate=False)
    (info,) = results.models
    assert abs(info.parameters / SambaASR(resolve_preset("micro")).num_parameters() - 1) < 0.1
    (e2e,) = results.end_to_end
    assert e2e.windows == 1 and e2e.tokens == 15  # one 3 s chunk at 5 tokens/s
    assert [(r.model, r.windows) for r in results.encoder] == [("whisper", 1)]
    assert [(r.model, r.batch, r.frames) for r in results.step] == [("whisper", 1, 1500)]
    assert not results.skipped
    assert "| whisper | micro |" in write_results(results, tmp_path)[1].read_text()


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_whisper_parameter_count_is_within_ten_percent(preset):
    pytest.importorskip("transformers")
    from benchmarks.size_matched.whisper_runner import _whisper_parameters, whisper_config

    config = resolve_preset(preset)
    with torch.device("meta"):  # shapes only
        samba = SambaASR(config).num_parameters()
    whisper = _whisper_parameters(whisper_config(config, matched_whisper_layers(preset)))
    assert abs(whisper / samba - 1) < 0.1


def test_case_runs_in_a_child_process_and_reports_its_peak_memory():
    options = BenchOptions(models=("samba",), **TINY_RUN)
    data = run_case_in_child(Case("end_to_end", "samba", "micro", 2.0), options, timeout=300)
    e2e = data["end_to_end"]
    assert e2e["audio_seconds"] == 2.0 and e2e["peak_rss_bytes"] >= e2e["baseline_rss_bytes"] > 0


def test_budget_skips_cases_predicted_to_overrun():
    options = BenchOptions(models=("samba",), **{**TINY_RUN, "minutes": (1 / 60, 600.0)}, budget_seconds=120)
    results = run_bench(options, isolate=False)
    assert [r.audio_seconds for r in results.end_to_end] == [1.0]
    (skipped,) = results.skipped
    assert skipped.audio_seconds == 36000.0 and "predicted" in skipped.reason


def test_gpu_pipeline_inputs(tmp_path):
    """benchmarks/gpu: the sample cut into its four utterances, a recording of them with its reference, and
    clips packed as Ogg Vorbis read back at 16 kHz with their texts (the count and the length filter kept)."""
    import soundfile as sf

    from benchmarks.gpu.pack import pack_clips
    from benchmarks.gpu.pipeline import build_recording, load_packed, sample_utterances
    from benchmarks.whisper_torch.check import corpus_wer

    utterances = sample_utterances()
    assert [round(len(a) / SAMPLE_RATE, 2) for a, _ in utterances] == [4.33, 4.67, 7.62, 3.2]
    audio, reference = build_recording(utterances, 0.5)
    assert 30 <= len(audio) / SAMPLE_RATE < 30 + 7.7 + 1.5
    assert all(text in reference for _, text in utterances)
    assert corpus_wer([reference], [reference]) == 0 and corpus_wer(["a b"], ["a c"]) == 50
    rows = []
    for i, seconds in enumerate([0.5, 1.5, 2.0, 12.0, 3.0]):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        sf.write(tmp_path / f"c{i}.flac", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SAMPLE_RATE)
        rows.append(json.dumps({"audio": f"c{i}.flac", "text": f"clip {i}", "duration": seconds}))
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    seconds = pack_clips(tmp_path / "m.jsonl", 2, 1.0, 10.0, tmp_path / "out")
    assert seconds == pytest.approx(3.5)
    clips, texts = load_packed(tmp_path / "out")
    assert texts == ["clip 1", "clip 2"] and [len(c) for c in clips] == [24000, 32000]
    assert np.corrcoef(clips[1], sf.read(tmp_path / "c2.flac")[0])[0, 1] > 0.99
    with pytest.raises(SystemExit, match="only 3 clips"):
        pack_clips(tmp_path / "m.jsonl", 4, 1.0, 10.0, tmp_path / "out2")


def test_paired_bootstrap_finds_a_clear_gain_and_no_gain_in_equal_reports():
    """benchmarks/paired.py: equal reports give 0 with a 0..0 interval; B with fewer errors on every clip gives an
    interval wholly below 0; reports over different clips are refused."""
    from benchmarks.paired import compare

    def report(errors):
        return {
            "results": [{"audio": f"c{i}.flac", "word_errors": e, "words": 10} for i, e in enumerate(errors)]
        }

    a = report([3, 5, 2, 4, 6, 1, 3, 5])
    same = compare(a, report([3, 5, 2, 4, 6, 1, 3, 5]))
    assert (same.wer_a, same.wer_b, same.low, same.high, same.b_better, same.b_worse) == (
        36.25,
        36.25,
        0,
        0,
        0,
        0,
    )
    gain = compare(a, report([1, 3, 1, 2, 4, 0, 1, 3]))
    assert gain.wer_b < gain.wer_a and gain.high < 0 and gain.b_better == 8
    with pytest.raises(ValueError, match="different clips"):
        compare(a, report([1, 2]))


def test_gpu_run_script_fails_when_a_step_fails(tmp_path):
    """benchmarks/gpu/run.sh exits 1 and names the steps that failed (here: an unknown one), so that a device run
    whose steps failed does not read as a success."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "DEVICE": "cpu", "OUT": str(tmp_path / "out")}
    run = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", "nosuch"], cwd=root, env=env, capture_output=True, text=True
    )
    assert run.returncode == 1 and "failed steps: nosuch" in run.stdout
    assert (tmp_path / "out" / "run.log").is_file()
