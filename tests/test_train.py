"""Training: batches, augmentation, objective, schedule, the loop (loss goes down, exact resume), tokenizer CLI."""

import json
import math
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from samba_cli.commands.train import app
from samba_cli.features import FEATURE_UNITS_PER_DB
from samba_cli.model import PRESETS, SambaASR, load_checkpoint
from samba_cli.model.checkpoint import read_config_file
from samba_cli.train.augment import (
    NoiseAugment,
    SpecAugment,
    colored_noise,
    convolve,
    random_envelope,
    room_impulse,
    speed_perturb,
    warp_frequency,
)
from samba_cli.train.config import TrainConfig
from samba_cli.train.data import Augmentation, BatchDataset, plan_batches, read_manifest, shard_batches
from samba_cli.train.loop import METRICS_FILE, train
from samba_cli.train.objective import decoder_io
from samba_cli.train.optim import learning_rate, parameter_groups
from samba_cli.train.state import LOCK_FILE
from tests.model_helpers import TINY
from tests.train_helpers import (  # noqa: F401 (autouse fixtures)
    SENTENCES,
    manifests_with_bad_audio,
    one_thread,
    test_preset,
    tiny_train_config,
    write_corpus,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    manifest = write_corpus(folder)
    result = CliRunner().invoke(
        _cli(),
        ["train", "tokenizer", str(manifest), "--out", str(folder / "tok.model"), "--vocab-size", "40"],
    )
    assert result.exit_code == 0, result.output
    return manifest, folder / "tok.model"


def _cli():
    root = typer.Typer()
    root.add_typer(app, name="train")
    root.command("noop")(lambda: None)
    return root


def config_for(corpus, out_dir, **changes):
    manifest, tokenizer = corpus
    return tiny_train_config(manifest, tokenizer, out_dir, **changes)


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_manifest_paths_relative_to_manifest(corpus):
    utterances = read_manifest(corpus[0])
    assert len(utterances) == len(SENTENCES)
    assert all(u.audio.is_file() for u in utterances)


def test_manifest_fields_become_text_labels(corpus, tmp_path):
    entries = [json.loads(line) for line in corpus[0].read_text().splitlines()]
    entries[0]["voice"], entries[1]["voice"] = "slt", {"engine": "flite", "rate": 1.1}
    edited = corpus[0].parent / "labelled.jsonl"
    edited.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    utterances = read_manifest(edited, fields=("voice",))
    assert [u.labels["voice"] for u in utterances[:3]] == ["slt", '{"engine": "flite", "rate": 1.1}', ""]
    assert read_manifest(edited)[0].labels == {}


def test_train_run_names_a_missing_or_unreadable_audio_file(corpus, tmp_path):
    from samba_cli.cli import app as samba_app

    manifest, tokenizer = corpus
    options = {"--preset": "test", "--max-steps": 2, "--workers": 1, "--threads": 1, "--speeds": "1.0"}
    options |= {"--accumulate": 1, "--max-batch-utterances": 8, "--max-batch-seconds": 8}
    for edited, message in manifests_with_bad_audio(manifest, tmp_path):
        command = [
            "train",
            "run",
            str(edited),
            "--tokenizer",
            str(tokenizer),
            "--out",
            str(tmp_path / edited.stem),
        ]
        command += [str(x) for option in options.items() for x in option]
        result = CliRunner().invoke(samba_app, command)
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines()[-1] == message


def test_tokenizer_command_sets_special_ids(corpus):
    from samba_cli.tokenizer import Tokenizer

    tokenizer = Tokenizer(corpus[1])
    assert (tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (40, 1, 2, 3)
    assert tokenizer.decode(tokenizer.encode("the cat sat")) == "the cat sat"


def test_plan_batches_respects_limits_and_covers_everything():
    durations = [float(d) for d in torch.rand(200, generator=torch.Generator().manual_seed(1)) * 10 + 0.5]
    batches = plan_batches(
        durations, max_seconds=30.0, max_utterances=8, generator=torch.Generator().manual_seed(2)
    )
    assert sorted(i for b in batches for i in b) == list(range(200))
    for batch in batches:
        assert len(batch) <= 8
        assert len(batch) * max(durations[i] for i in batch) <= 30.0
    again = plan_batches(durations, 30.0, 8, torch.Generator().manual_seed(2))
    assert again == batches
    shards = [shard_batches(batches, rank, 3, multiple=2) for rank in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) % 2 == 0
    assert not set(map(tuple, shards[0])) & set(map(tuple, shards[1]))


def test_augmentation_shapes_and_determinism():
    samples = torch.randn(16000)
    assert speed_perturb(samples, 1.1).shape == (14545,)
    assert speed_perturb(samples, 0.9).shape == (17778,)
    features = torch.randn(80, 300)
    masks = SpecAugment(freq_masks=2, freq_mask_width=10, time_masks=2, time_mask_width=30)
    a = masks(features, torch.Generator().manual_seed(5))
    b = masks(features, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert (a != features).any()


def test_frequency_warp_moves_formants_and_keeps_the_ends():
    features = torch.zeros(80, 5)
    features[20] = 1.0  # a "formant" at mel bin 20
    up = warp_frequency(features, 1.1)
    assert int(up[:, 0].argmax()) == 22 and up.shape == features.shape
    assert int(warp_frequency(features, 0.9)[:, 0].argmax()) == 18
    assert warp_frequency(features, 1.0) is features
    ramp = torch.arange(80.0).unsqueeze(1).expand(80, 3)  # a bin's value is its index
    for alpha in (0.85, 0.95, 1.05, 1.15):
        warped = warp_frequency(ramp, alpha)[:, 0]
        assert warped[0] == 0 and warped[-1] == 79  # the ends stay
        assert (warped.diff() > 0).all()  # monotone: nothing folds over
        assert abs(float(warped[40]) - 40 / alpha) < 1e-4  # linear below the knee


def test_spec_augment_warp_is_drawn_from_the_generator():
    features = torch.randn(80, 300)
    warp = SpecAugment(freq_masks=0, time_masks=0, freq_warp=0.1)
    a = warp(features, torch.Generator().manual_seed(1))
    assert torch.equal(a, warp(features, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, warp(features, torch.Generator().manual_seed(2)))
    assert not torch.equal(a, features)
    plain = SpecAugment(freq_masks=0, time_masks=0)
    assert torch.equal(plain(features, torch.Generator().manual_seed(1)), features)
    with pytest.raises(ValueError, match="freq_warp"):
        TrainConfig(train_manifest="m.jsonl", tokenizer="t.model", freq_warp=0.6)


def test_random_envelope_is_smooth_bounded_and_drawn_from_the_generator():
    envelopes = [random_envelope(80, 10.0, torch.Generator().manual_seed(seed)) for seed in range(20)]
    assert torch.equal(envelopes[0], random_envelope(80, 10.0, torch.Generator().manual_seed(0)))
    peaks = torch.stack([e.abs().max() for e in envelopes])
    assert float(peaks.max()) <= 10.0 * FEATURE_UNITS_PER_DB + 1e-6  # at most 10 dB
    assert float(peaks.max()) > 5.0 * FEATURE_UNITS_PER_DB  # and the level is drawn, not always tiny
    assert len({round(float(p), 6) for p in peaks}) == 20
    for envelope in envelopes:  # smooth: four cosines over 80 bins move little from one bin to the next
        assert float(envelope.diff().abs().max()) <= float(envelope.abs().max()) * 0.25 + 1e-6


def test_spec_augment_envelope_adds_one_curve_to_every_frame():
    features = torch.randn(80, 50)
    coloured = SpecAugment(freq_masks=0, time_masks=0, envelope_db=10.0)(
        features, torch.Generator().manual_seed(3)
    )
    added = coloured - features
    expected = random_envelope(80, 10.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(added, expected.unsqueeze(1).expand(80, 50))
    with pytest.raises(ValueError, match="envelope_db"):
        TrainConfig(train_manifest="m.jsonl", tokenizer="t.model", envelope_db=-1.0)


def _speech_like(seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t)  # syllable-rate amplitude modulation
    return 0.6 * envelope * (torch.sin(2 * math.pi * 220 * t) + 0.5 * torch.sin(2 * math.pi * 1100 * t))


def test_noise_is_added_at_the_drawn_snr_and_keeps_the_peak():
    clean = _speech_like()
    for snr in (5.0, 20.0):
        augment = NoiseAugment(noise_prob=1.0, snr=(snr, snr))
        noisy = augment(clean, torch.Generator().manual_seed(3))
        assert noisy.shape == clean.shape
        assert float(noisy.abs().max()) == pytest.approx(float(clean.abs().max()), rel=1e-5)
        gain = float(noisy @ clean / (clean @ clean))  # the peak rescaling; the noise is nearly orthogonal
        noise = noisy / gain - clean
        measured = 10 * math.log10(float(clean.square().mean() / noise.square().mean()))
        assert measured == pytest.approx(snr, abs=0.3)
    a = NoiseAugment(noise_prob=1.0)(clean, torch.Generator().manual_seed(1))
    assert torch.equal(a, NoiseAugment(noise_prob=1.0)(clean, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, NoiseAugment(noise_prob=1.0)(clean, torch.Generator().manual_seed(2)))
    assert NoiseAugment()(clean, torch.Generator()) is clean  # both shares 0: untouched
    assert not NoiseAugment().enabled and NoiseAugment(reverb_prob=0.1).enabled


def test_noise_colors_have_their_spectral_slopes():
    def low_to_high(color):  # power below 500 Hz over power in 4-8 kHz (bins of 1 Hz at 16 kHz over 1 s)
        power = torch.fft.rfft(colored_noise(16000, color, torch.Generator().manual_seed(0))).abs().square()
        return float(power[20:500].mean() / power[4000:8000].mean())

    white, pink, brown = (low_to_high(c) for c in ("white", "pink", "brown"))
    assert 0.7 < white < 1.4
    assert 5 < pink < 60  # power ~ 1/f: about 8000 / 500 = 16 at the bands' far ends
    assert brown > 10 * pink
    for color in ("white", "pink", "brown"):
        assert float(colored_noise(8000, color, torch.Generator()).square().mean()) == pytest.approx(
            1.0, rel=1e-4
        )


def test_reverberation_decays_by_its_rt60_and_convolves_linearly():
    impulse = room_impulse(0.5, 16000, torch.Generator().manual_seed(0))
    assert impulse.shape == (8000,) and float(impulse.norm()) == pytest.approx(1.0)
    energy = impulse[1:].square()
    early, late = float(energy[:800].mean()), float(energy[-800:].mean())  # first and last 50 ms
    assert 10 * math.log10(early / late) == pytest.approx(60 * 0.9, abs=6)  # 0.45 s apart: 54 dB
    x, h = torch.randn(300, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    direct = torch.tensor([sum(float(x[i - k] * h[k]) for k in range(50) if i - k >= 0) for i in range(300)])
    assert torch.allclose(convolve(x, h), direct.to(x.dtype), atol=1e-9)
    clean = _speech_like()
    wet = NoiseAugment(reverb_prob=1.0, wet=(1.0, 1.0))(clean, torch.Generator().manual_seed(4))
    assert wet.shape == clean.shape and not torch.allclose(wet, clean, atol=1e-2)
    assert float(wet.abs().max()) == pytest.approx(float(clean.abs().max()), rel=1e-5)


def test_batches_get_fresh_noise_from_their_seed(corpus):
    manifest, _ = corpus
    utterances = read_manifest(manifest)[:4]
    tokens = [[5, 6]] * len(utterances)

    def batch(noise, seed):
        augmentation = Augmentation(speeds=(1.0,), spec_augment=None, noise=noise)
        return BatchDataset(utterances, tokens, [[0, 1, 2, 3]], 80, 0, augmentation, [seed])[0].features

    plain = batch(None, 0)
    noisy = NoiseAugment(noise_prob=1.0, snr=(5.0, 5.0), reverb_prob=1.0)
    assert torch.equal(batch(NoiseAugment(), 0), plain)  # both shares 0: off
    assert torch.equal(batch(noisy, 0), batch(noisy, 0))
    assert not torch.equal(batch(noisy, 0), plain) and not torch.equal(batch(noisy, 0), batch(noisy, 1))
    assert batch(noisy, 0).shape == plain.shape


def test_noise_options_are_checked():
    for bad in (
        {"noise_prob": 1.5},
        {"reverb_prob": -0.1},
        {"noise_snr": (20, 10)},
        {"reverb_rt60": (0, 0.5)},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(train_manifest="m.jsonl", tokenizer="t.model", **bad)
    config = TrainConfig(train_manifest="m.jsonl", tokenizer="t.model", noise_snr=[0, 10])
    assert config.noise_snr == (0.0, 10.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_decoder_io_adds_bos_and_eos():
    config = TINY
    tokens = torch.tensor([[7, 8, 9], [5, 3, 3]])
    inputs, targets = decoder_io(tokens, torch.tensor([3, 1]), config)
    assert inputs.tolist() == [[1, 7, 8, 9], [1, 5, 3, 3]]
    assert targets.tolist() == [[7, 8, 9, 2], [5, 2, 3, 3]]


def test_schedule_warms_up_then_decays():
    config = TrainConfig("m", "t", lr=1e-3, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    lrs = [learning_rate(step, config) for step in range(110)]
    assert lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert learning_rate(110, config) == pytest.approx(1e-4)
    linear = config.replace(schedule="linear")
    assert learning_rate(60, linear) == pytest.approx(1e-4 + 0.9e-3 * 0.5)


def test_no_weight_decay_on_norms_biases_and_marked_params():
    model = SambaASR(TINY)
    decay, no_decay = parameter_groups(model, 0.01)
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for name, param in model.named_parameters():
        quiet = param.ndim < 2 or name.endswith(("A_log", "D", "dt_bias")) or "norm" in name
        assert (id(param) in no_decay_ids) == quiet, name
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_training_lowers_the_loss_on_a_fixed_batch(corpus, tmp_path):
    config = config_for(
        corpus, tmp_path / "run", max_batch_seconds=100.0, max_batch_utterances=100, lr=1e-2, max_steps=6
    )
    run = train(config)
    values = losses(run)
    assert len(values) == config.max_steps
    assert values[-1] < 0.7 * values[0]
    model = load_checkpoint(run / "checkpoint")
    assert model.config.vocab_size == 40
    assert (run / "checkpoint" / "tokenizer.model").is_file()
    assert TrainConfig.load(run / "train_config.json") == config


def test_cpu_bf16_autocast_trains_and_stays_close_to_float32(corpus, tmp_path):
    """--cpu-bf16 runs the forward pass under bfloat16 autocast on CPU: the same start (seeded weights, batch) gives
    a first loss a little different from float32's, and the loss falls as in float32."""
    runs = {}
    for name, cpu_bf16 in (("fp32", False), ("bf16", True)):
        config = config_for(
            corpus,
            tmp_path / name,
            max_batch_seconds=100.0,
            max_batch_utterances=100,
            lr=1e-2,
            max_steps=6,
            cpu_bf16=cpu_bf16,
        )
        runs[name] = losses(train(config))
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert bf16[0] != fp32[0], "the bfloat16 forward pass ran in float32"
    assert abs(bf16[0] - fp32[0]) < 0.02 * fp32[0]
    assert bf16[-1] < 0.7 * bf16[0]


def test_resume_reproduces_the_losses(corpus, tmp_path):
    # augmentation on, two batches per step, an epoch per step: everything a resume has to restore.
    config = config_for(
        corpus, tmp_path / "full", accumulate=2, max_batch_seconds=3.0, max_steps=4, speeds=(0.9, 1.0, 1.1)
    )
    config = config.replace(
        freq_masks=1, freq_mask_width=4, time_masks=1, time_mask_width=10, noise_prob=0.5, reverb_prob=0.5
    )
    expected = losses(train(config))
    assert len(expected) == 4
    interrupted = config.replace(out_dir=str(tmp_path / "cut"))
    train(interrupted, on_step=lambda record: record["step"] == 2)
    assert len(losses(tmp_path / "cut")) == 2
    resumed = losses(train(interrupted))
    assert resumed == expected
    assert not math.isnan(resumed[-1])


def test_resume_refuses_changed_options_and_a_busy_run_folder(corpus, tmp_path):
    config = config_for(corpus, tmp_path / "run", max_steps=1)
    train(config)
    with pytest.raises(ValueError, match="lr"):
        train(config.replace(lr=1.0))
    (tmp_path / "run" / LOCK_FILE).write_text(str(os.getppid()))  # a live process
    with pytest.raises(ValueError, match="in use"):
        train(config)
    (tmp_path / "run" / LOCK_FILE).write_text("999999999")  # a stale lock is taken over
    train(config)
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def _ddp_worker(rank: int, world_size: int, port: int, config: TrainConfig) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    PRESETS["test"] = TINY
    train(config)
    # Leave without interpreter finalization: about 1 run in 6 here, a rank then aborted in a C++ destructor
    # ("terminate called without an active exception") after training had finished and written its files.
    sys.stdout.flush()
    os._exit(0)


def test_two_processes_train_with_ddp_on_cpu(corpus, tmp_path):
    """Two ranks of one batch each make the same steps as one process accumulating two batches: the same
    batches (with their augmentation), the same averaged gradients, the same logged losses and weights."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = config_for(
        corpus,
        tmp_path / "ddp",
        max_batch_seconds=2.0,
        max_steps=3,
        dev_manifest=str(corpus[0]),
        speeds=(0.9, 1.0, 1.1),
    )
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, config), nprocs=2)
    records = [json.loads(line) for line in (tmp_path / "ddp" / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert any("val_wer_ctc" in r for r in records)
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint").config.vocab_size == 40
    metadata = read_config_file(tmp_path / "ddp" / "best")["metadata"]
    assert metadata["default_decoder"] in ("ctc", "attention") and metadata["step"] in (1, 2, 3)

    single = train(config.replace(out_dir=str(tmp_path / "single"), accumulate=2))
    single_records = [json.loads(line) for line in (single / METRICS_FILE).read_text().splitlines()]
    for ddp_record, one in zip(
        [r for r in records if "loss" in r], [r for r in single_records if "loss" in r], strict=True
    ):
        assert ddp_record["utterances"] == one["utterances"]
        assert ddp_record["seconds"] == pytest.approx(one["seconds"])
        for key in ("loss", "ctc", "attention", "grad_norm"):
            assert ddp_record[key] == pytest.approx(one[key], rel=1e-4)
    ddp_weights = load_checkpoint(tmp_path / "ddp" / "checkpoint").state_dict()
    for name, value in load_checkpoint(single / "checkpoint").state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-4, atol=1e-5)


def test_init_from_starts_a_new_run_from_trained_weights(corpus, tmp_path):
    common = {"max_batch_seconds": 100.0, "max_batch_utterances": 100, "lr": 1e-2}
    first = train(config_for(corpus, tmp_path / "first", max_steps=6, **common))
    trained = losses(first)
    second = config_for(
        corpus,
        tmp_path / "second",
        max_steps=2,
        **common,
        preset="tiny",  # ignored: the model config comes from the checkpoint
        init_from=str(first / "checkpoint"),
    )
    continued = losses(train(second))
    assert continued[0] < 0.8 * trained[0], "a run started from trained weights starts below a fresh one"
    assert load_checkpoint(tmp_path / "second" / "checkpoint").config.d_model == TINY.d_model


def test_keep_every_snapshots_average_to_their_mean(corpus, tmp_path):
    run = train(config_for(corpus, tmp_path / "run", max_steps=4, keep_every=2))
    snapshots = sorted((run / "snapshots").iterdir())
    assert [s.name for s in snapshots] == ["step-000002", "step-000004"]
    out = tmp_path / "averaged"
    result = CliRunner().invoke(_cli(), ["train", "average", *map(str, snapshots), "--out", str(out)])
    assert result.exit_code == 0, result.output
    first, second, mean = (load_checkpoint(f).state_dict() for f in (*snapshots, out))
    assert any(not torch.equal(first[k], second[k]) for k in first), "the snapshots differ"
    for name, tensor in mean.items():
        torch.testing.assert_close(tensor, (first[name] + second[name]) / 2)
    metadata = read_config_file(out)["metadata"]
    assert metadata["averaged_steps"] == [2, 4]
    assert (out / "tokenizer.model").read_bytes() == (run / "checkpoint" / "tokenizer.model").read_bytes()


def test_average_refuses_checkpoints_of_different_models(corpus, tmp_path):
    from samba_cli.errors import CheckpointError
    from samba_cli.model import save_checkpoint
    from samba_cli.train.average import average_checkpoints

    run = train(config_for(corpus, tmp_path / "run", max_steps=1))
    other = save_checkpoint(SambaASR(TINY.replace(d_model=TINY.d_model * 2)), tmp_path / "other")
    with pytest.raises(CheckpointError, match="other: its model config differs"):
        average_checkpoints([run / "checkpoint", other], tmp_path / "out")
    with pytest.raises(CheckpointError, match="no config.json"):
        average_checkpoints([run / "checkpoint", tmp_path / "missing"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_training_after_a_checkpoint_and_exits_130(corpus, tmp_path):
    """main saved the state and exited 0 after Ctrl-C (transcribe and cluster exit 130)."""
    import signal
    import subprocess
    import time

    manifest, tokenizer = corpus
    out = tmp_path / "run"
    code = "from tests.model_helpers import TINY; from samba_cli.model.config import PRESETS; PRESETS['test'] = TINY; "
    code += "from samba_cli.cli import main; main()"
    command = [sys.executable, "-c", code, "train", "run", str(manifest)]
    command += ["--tokenizer", str(tokenizer), "--out", str(out), "--preset", "test", "--max-steps", "100000"]
    options = {"--workers": 0, "--threads": 1, "--speeds": "1.0", "--save-every": 100000, "--log-every": 1}
    options |= {"--accumulate": 1, "--max-batch-utterances": 8, "--max-batch-seconds": 8}
    command += [str(x) for option in options.items() for x in option]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training never took a step: {process.communicate()[1].decode()}")
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr
    assert (out / "state.pt").is_file()  # the stop saved a checkpoint: rerunning resumes
