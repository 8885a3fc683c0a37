"""Evaluation: error counting, normalisation, and `samba eval` on a manifest whose WER is known."""

import dataclasses
import gzip
import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from samba_cli.commands.eval import eval_command
from samba_cli.model import SambaASR, save_checkpoint
from samba_cli.options import CTCOptions, DecodeOptions, resolve_decode
from samba_cli.tokenizer import Tokenizer, train_tokenizer
from samba_cli.train import evaluate as evaluate_module
from samba_cli.train.data import read_manifest
from samba_cli.train.evaluate import ErrorCounts, count_errors, evaluate, normalize
from tests.model_helpers import TINY, write_tiny_lm
from tests.train_helpers import SENTENCES, manifests_with_bad_audio, write_corpus

# Hypotheses for the first three utterances of the corpus: exact, one deletion, one insertion and one
# substitution; 16 reference words, 3 errors.
HYPOTHESES = ["The cat sat on the mat.", "a dog ran in park", "Birds sing at the down"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    manifest = write_corpus(folder, SENTENCES[:1] + SENTENCES[1:2] + SENTENCES[3:4])
    text = folder / "text.txt"
    text.write_text("\n".join(SENTENCES + HYPOTHESES) + "\n")
    tokenizer = train_tokenizer(text, folder / "tok", vocab_size=40)
    model = SambaASR(TINY).eval()
    save_checkpoint(model, folder / "model", tokenizer_file=tokenizer, metadata={"default_decoder": "ctc"})
    return folder / "model", manifest


def test_count_errors_words_and_characters():
    counts = count_errors("the cat sat", "the cat sit down")
    assert (counts.word_errors, counts.words) == (2, 3)
    assert (counts.char_errors, counts.chars) == (6, 11)
    assert count_errors("", "extra words") == ErrorCounts(2, 0, 11, 0)
    assert count_errors("two words", "") == ErrorCounts(2, 2, 9, 9)
    assert (counts + counts).wer == pytest.approx(2 / 3)


def test_normalize_ignores_case_punctuation_and_spelling_variants():
    assert normalize("Hello, World!") == normalize("hello world") == "hello world"
    assert normalize("Mr. Smith isn't here.") == normalize("mister smith is not here")


def fake_decoder(tokenizer):
    def decode_batch(model, batch, options, steppers, pieces=None):
        return [tokenizer.encode(HYPOTHESES[i]) for i in batch.indices]

    return decode_batch


def test_evaluate_scores_known_hypotheses(checkpoint, monkeypatch):
    model_dir, manifest = checkpoint
    tokenizer = Tokenizer(model_dir / "tokenizer.model")
    monkeypatch.setattr(evaluate_module, "decode_batch", fake_decoder(tokenizer))
    report = evaluate(SambaASR(TINY), tokenizer, read_manifest(manifest), max_batch_seconds=1.5)
    assert [u.hypothesis for u in report.utterances] == HYPOTHESES
    assert report.errors.word_errors == 3 and report.errors.words == 16
    assert report.summary()["wer"] == pytest.approx(3 / 16)
    assert report.real_time_factor > 0


def test_eval_command_writes_the_report(checkpoint, monkeypatch, tmp_path):
    model_dir, manifest = checkpoint
    monkeypatch.setattr(
        evaluate_module, "decode_batch", fake_decoder(Tokenizer(model_dir / "tokenizer.model"))
    )
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    report = tmp_path / "reports" / "new" / "report.json"  # its folder is made
    result = CliRunner().invoke(app, ["eval", str(model_dir), str(manifest), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "WER 18.75% (3/16)" in result.output
    data = json.loads(report.read_text())
    assert data["wer"] == pytest.approx(3 / 16) and data["utterances"] == 3
    assert data["decoder"] == "ctc"  # --decoder auto: the checkpoint's default_decoder
    second = data["results"][1]
    assert second["normalized_hypothesis"] == "a dog ran in park"
    assert (second["word_errors"], second["words"]) == (1, 6)


@pytest.mark.parametrize("decoder", ["ctc", "attention", "ctc-beam", "ctc-lm"])
def test_real_decoders_run_on_a_random_model(checkpoint, decoder, tmp_path):
    model_dir, manifest = checkpoint
    tokenizer = Tokenizer(model_dir / "tokenizer.model")
    options = DecodeOptions(decoder=decoder.split("-")[0])
    if decoder.startswith("ctc-"):
        options = dataclasses.replace(options, beam_size=4)
    if decoder == "ctc-lm":
        options = dataclasses.replace(options, ctc=CTCOptions(lm=str(tmp_path / "lm.arpa.gz")))
        write_tiny_lm(tmp_path / "lm.arpa.gz")
    report = evaluate(SambaASR(TINY).eval(), tokenizer, read_manifest(manifest), resolve_decode(options))
    assert len(report.utterances) == 3
    assert all(isinstance(u.hypothesis, str) for u in report.utterances)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_eval_runs_in_the_dtypes_transcribe_offers(checkpoint, tmp_path, dtype):
    """`samba eval --dtype` scores the model as `samba transcribe --dtype` runs it (float32 features into a
    bfloat16 model gave a traceback)."""
    model_dir, manifest = checkpoint
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        ["eval", str(model_dir), str(manifest), "--dtype", dtype, "--lm", "none", "--report", str(report)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["utterances"] == 3


def test_eval_group_by_scores_each_value_of_a_field(checkpoint, monkeypatch, tmp_path):
    model_dir, manifest = checkpoint
    monkeypatch.setattr(
        evaluate_module, "decode_batch", fake_decoder(Tokenizer(model_dir / "tokenizer.model"))
    )
    grouped = manifest.parent / "grouped.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    with grouped.open("w") as out:
        for entry, voice in zip(lines, ["slt", "slt", "kal"], strict=True):
            out.write(json.dumps({**entry, "voice": voice}) + "\n")
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    report = tmp_path / "report.json"
    args = ["eval", str(model_dir), str(grouped), "--report", str(report), "--group-by", "voice"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["group_by"] == "voice" and list(data["groups"]) == ["kal", "slt"]
    kal, slt = data["groups"]["kal"], data["groups"]["slt"]
    assert (kal["utterances"], kal["word_errors"], slt["utterances"], slt["word_errors"]) == (1, 2, 2, 1)
    assert kal["words"] + slt["words"] == data["words"] == 16
    assert [r["voice"] for r in data["results"]] == ["slt", "slt", "kal"]
    assert f"voice=slt: WER {100 / slt['words']:.2f}% (1/{slt['words']})" in result.output
    assert not list(tmp_path.glob(".*.tmp")), "the report is written through a temporary file"


def test_eval_uses_the_model_folders_language_model(checkpoint, tmp_path):
    from samba_cli.cli import app as samba_app

    model_dir, manifest = checkpoint
    folder = tmp_path / "with-lm"
    shutil.copytree(model_dir, folder)
    write_tiny_lm(folder / "lm.arpa.gz")
    (folder / "lexicon.txt.gz").write_bytes(gzip.compress(b"cats\n"))
    result = CliRunner().invoke(
        samba_app, ["eval", str(folder), str(manifest), "--report", str(tmp_path / "a.json")]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"CTC beam search of 64 with {folder / 'lm.arpa.gz'} (weight 0.5, word bonus 2.0, OOV penalty 0.0)"
        in result.stdout
    )
    assert f"lexicon {folder / 'lexicon.txt.gz'} (penalty 0.0)" in result.stdout
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["lm"] == str(folder / "lm.arpa.gz")
    assert report["lexicon"] == str(folder / "lexicon.txt.gz")
    settings = [report[key] for key in ("beam_size", "lm_weight", "word_bonus", "oov_penalty")]
    assert settings == [64, 0.5, 2.0, 0.0]  # the defaults
    strict = [
        "eval",
        str(folder),
        str(manifest),
        "--oov-penalty",
        "1.5",
        "--rescore-weight",
        "0.5",
        "--attention-beam",
        "2",
        "--report",
        str(tmp_path / "c.json"),
    ]
    strict_result = CliRunner().invoke(samba_app, strict)
    assert strict_result.exit_code == 0, strict_result.output
    assert "final beams reranked by the attention decoder (weight 0.5)" in strict_result.stdout
    assert json.loads((tmp_path / "c.json").read_text())["oov_penalty"] == 1.5
    assert json.loads((tmp_path / "c.json").read_text())["rescore_weight"] == 0.5
    assert "with the hypotheses of an attention beam search of 2" in strict_result.stdout
    assert json.loads((tmp_path / "c.json").read_text())["attention_beam"] == 2
    assert report["attention_beam"] == 0
    assert report["rescore_weight"] == 0.0  # off unless asked or set by the model
    off = ["eval", str(folder), str(manifest), "--lm", "none", "--report", str(tmp_path / "b.json")]
    assert CliRunner().invoke(samba_app, off).exit_code == 0
    assert json.loads((tmp_path / "b.json").read_text())["lm"] is None
    missing = CliRunner().invoke(
        samba_app, ["eval", str(folder), str(manifest), "--lm", str(tmp_path / "x.arpa")]
    )
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"error: {tmp_path / 'x.arpa'}: language model not found"


def test_eval_report_that_cannot_be_written_is_a_one_line_error(checkpoint, tmp_path):
    from samba_cli.cli import app as samba_app

    model_dir, manifest = checkpoint
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the report's folder should be\n")
    report = blocker / "report.json"
    result = CliRunner().invoke(
        samba_app, ["eval", str(model_dir), str(manifest), "--lm", "none", "--report", str(report)]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"error: {report}: cannot write the report")
    assert "Traceback" not in result.output
    assert blocker.read_text() == "a file where the report's folder should be\n"


@pytest.mark.parametrize("how", [["--workers", "0"], ["--workers", "1"], ["--window-longer-than", "0"]])
def test_eval_of_missing_or_unreadable_audio_is_a_one_line_error(checkpoint, tmp_path, how):
    from samba_cli.cli import app as samba_app

    model_dir, manifest = checkpoint
    report = tmp_path / "r.json"
    for edited, message in manifests_with_bad_audio(manifest, tmp_path):
        command = [
            "eval",
            str(model_dir),
            str(edited),
            "--lm",
            "none",
            *how,
            "--report",
            str(report),
        ]
        result = CliRunner().invoke(samba_app, command)
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines() == [message]
        assert not report.exists()


def test_eval_of_an_empty_manifest_is_an_error(checkpoint, tmp_path):
    """main printed `WER 0.00% (0/0)` and exited 0."""
    from samba_cli.cli import app as samba_app

    model_dir, _ = checkpoint
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = CliRunner().invoke(samba_app, ["eval", str(model_dir), str(empty), "--lm", "none"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: {empty}: the manifest holds no utterances; nothing to score"


def test_eval_resamples_audio_as_transcribe_does(checkpoint, tmp_path):
    """main refused a 22 kHz file with "training data must be 16000 Hz" and let libmpg123 print on stderr."""
    import soundfile as sf

    from samba_cli.cli import app as samba_app
    from tests.media_helpers import run_ffmpeg

    model_dir, manifest = checkpoint
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    audio = manifest.parent / entries[0]["audio"]
    samples, rate = sf.read(audio, dtype="float32")
    sf.write(tmp_path / "a22k.wav", samples, 22050)  # the same samples, declared at 22.05 kHz
    run_ffmpeg("-i", audio, tmp_path / "a.mp3")
    resampled = tmp_path / "m.jsonl"
    resampled.write_text(
        "".join(json.dumps(dict(entries[0], audio=name)) + "\n" for name in ("a22k.wav", "a.mp3"))
    )
    result = CliRunner().invoke(
        samba_app,
        ["eval", str(model_dir), str(resampled), "--lm", "none", "--report", str(tmp_path / "r.json")],
    )
    assert result.exit_code == 0, result.output
    assert "2 utterances" in result.stdout and "Note:" not in result.stderr


def test_utterances_over_the_long_form_limit_are_transcribed_by_long_form(checkpoint, monkeypatch):
    """Only utterances longer than long_form_seconds go to long_form; the others are decoded whole, in order."""
    model_dir, manifest = checkpoint
    tokenizer = Tokenizer(model_dir / "tokenizer.model")
    utterances = read_manifest(manifest)
    limit = sorted(u.duration for u in utterances)[0]  # all but the shortest are longer
    whole = [u.audio for u in utterances if u.duration <= limit]

    def decode_batch(model, batch, options, steppers, pieces=None):
        return [tokenizer.encode(HYPOTHESES[0]) for _ in batch.indices]

    monkeypatch.setattr(evaluate_module, "decode_batch", decode_batch)
    report = evaluate(
        SambaASR(TINY),
        tokenizer,
        utterances,
        long_form=lambda u: f"windowed {u.audio.name}",
        long_form_seconds=limit,
    )
    for utterance, result in zip(utterances, report.utterances, strict=True):
        if utterance.audio in whole:
            assert (result.hypothesis, result.windowed) == (HYPOTHESES[0], False)
        else:
            assert (result.hypothesis, result.windowed) == (f"windowed {utterance.audio.name}", True)
    assert report.summary()["windowed_utterances"] == len(utterances) - len(whole) == 2


def test_eval_scores_long_audio_as_transcribe_writes_it(checkpoint, tmp_path):
    """A 10-minute recording in a manifest was decoded as one segment (98 % WER where `samba transcribe` gave
    27 %): utterances over --window-longer-than go through the windowed pipeline with the same decoding."""
    from samba_cli.api import load_model
    from samba_cli.cli import app as samba_app

    model_dir, manifest = checkpoint
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    longest = max(entries, key=lambda entry: entry["duration"])
    report = tmp_path / "r.json"
    command = ["eval", str(model_dir), str(manifest), "--report", str(report), "--beam-size", "4"]
    result = CliRunner().invoke(
        samba_app, [*command, "--window-longer-than", str(longest["duration"] - 0.01)]
    )
    assert result.exit_code == 0, result.output
    assert "1 utterances longer than" in result.stdout
    rows = {row["audio"]: row for row in json.loads(report.read_text())["results"]}
    audio = manifest.parent / longest["audio"]
    segments, _ = load_model(str(model_dir)).transcribe(str(audio), beam_size=4, word_timestamps=False)
    assert rows[str(audio)]["windowed"] is True
    assert rows[str(audio)]["hypothesis"] == " ".join(segment.text for segment in segments)
    assert sum(row["windowed"] for row in rows.values()) == 1
