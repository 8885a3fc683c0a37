"""The pseudo-label recipe (recipes/teacher/pseudo_labels.py): which clips it asks the teacher about, what it keeps,
that it resumes without asking again, and that bad input fails in one line without writing the manifest."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from samba_cli.train.data import read_manifest
from tests.test_distill import real_teacher_and_speech

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "teacher"))

import pseudo_labels as recipe  # noqa: E402

# what the fake teacher answers for each clip name: (text, avg_logprob, no_speech_prob, compression_ratio)
ANSWERS = {
    "good": ("Structure under attack.", -0.2, 0.01, 1.0),
    "unsure": ("Maybe this.", -0.9, 0.01, 1.0),
    "silent": ("You", -0.3, 0.9, 1.0),
    "looping": ("go go go go go go go go", -0.1, 0.01, 3.1),
    "digits": ("Unit 5 lost.", -0.1, 0.01, 1.0),
    "noise": ("...", -0.1, 0.01, 1.0),
    "crowded": ("one two three four five six seven eight nine ten eleven twelve", -0.1, 0.01, 1.2),
}


def write_clip(path: Path, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype("float32"), 16000)


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    for row in rows:
        write_clip(folder / row["audio"], row["duration"])
    manifest = folder / "clips.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def corpus(folder: Path) -> Path:
    rows = [
        {"audio": f"audio/{name}.flac", "text": None, "duration": 1.0, "language": "en"} for name in ANSWERS
    ]
    rows += [
        {"audio": "audio/french.flac", "text": None, "duration": 1.0, "language": "fr"},
        {"audio": "audio/british.flac", "text": None, "duration": 1.0, "language": "en_GB"},
        {"audio": "audio/labelled.flac", "text": "Already known.", "duration": 1.0, "language": "en"},
        {"audio": "audio/untagged.flac", "text": None, "duration": 1.0},
    ]
    return write_manifest(folder, rows)


class FakeTranscriber:
    calls: list[str] = []

    def __init__(self, python, threads):
        pass

    def __call__(self, audio: Path) -> dict:
        FakeTranscriber.calls.append(audio.stem)
        text, logprob, no_speech, compression = ANSWERS.get(audio.stem, ("Fine words.", -0.2, 0.01, 1.0))
        return {
            "text": text,
            "avg_logprob": logprob,
            "no_speech_prob": no_speech,
            "compression_ratio": compression,
            "tokens": 4,
            "cpu_seconds": 0.25,
        }

    def close(self):
        pass


@pytest.fixture
def fake_teacher(monkeypatch):
    FakeTranscriber.calls = []
    monkeypatch.setattr(recipe, "TranscriberProcess", FakeTranscriber)
    return FakeTranscriber


def test_only_untexted_english_clips_are_decoded_and_only_confident_labels_kept(
    tmp_path, fake_teacher, capsys
):
    manifest = corpus(tmp_path / "data")
    out = tmp_path / "labels" / "en.jsonl"
    assert recipe.main([str(manifest), "--out", str(out), "--teacher-python", "python"]) == 0
    # French and already labelled clips are never sent; untagged manifests count as English
    assert sorted(fake_teacher.calls) == sorted([*ANSWERS, "british", "untagged"])
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["audio"]).stem for r in kept) == ["british", "good", "untagged"]
    good = next(r for r in kept if r["audio"].endswith("good.flac"))
    assert good["text"] == "Structure under attack." and good["language"] == "en"
    assert (
        good["pseudo_label"]["avg_logprob"] == -0.2 and "Whisper tiny.en" in good["pseudo_label"]["teacher"]
    )
    # a manifest samba train reads: relative paths resolved from the new manifest's folder
    utterances = read_manifest(out)
    assert [u.text for u in utterances] == [r["text"] for r in kept]
    assert all(u.audio.is_file() for u in utterances)
    report = capsys.readouterr().out
    for reason in (
        "low log-probability",
        "no speech",
        "repetitive",
        "characters the tokenizer lacks",
        "no words",
    ):
        assert f"1 {reason}" in report
    assert "1 too many words for the duration" in report and "3 of 9 clips kept" in report


def test_a_second_run_asks_the_teacher_nothing_and_new_thresholds_need_no_decoding(tmp_path, fake_teacher):
    manifest = corpus(tmp_path / "data")
    out = tmp_path / "en.jsonl"
    argv = [str(manifest), "--out", str(out), "--teacher-python", "python"]
    assert recipe.main(argv) == 0
    first = out.read_text()
    fake_teacher.calls.clear()
    assert recipe.main(argv) == 0 and fake_teacher.calls == [] and out.read_text() == first
    assert recipe.main(argv + ["--min-avg-logprob", "-1.0"]) == 0 and fake_teacher.calls == []
    assert "unsure.flac" in out.read_text()


def test_a_run_stopped_midway_goes_on_where_it_stopped(tmp_path, fake_teacher):
    manifest = corpus(tmp_path / "data")
    out = tmp_path / "en.jsonl"
    cache = tmp_path / "en.jsonl.teacher.jsonl"
    assert recipe.main([str(manifest), "--out", str(out), "--teacher-python", "python"]) == 0
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # three replies and a line cut off
    out.unlink()
    fake_teacher.calls.clear()
    assert recipe.main([str(manifest), "--out", str(out), "--teacher-python", "python"]) == 0
    assert len(fake_teacher.calls) == len(lines) - 3
    assert len(out.read_text().splitlines()) == 3
    fake_teacher.calls.clear()
    assert recipe.main([str(manifest), "--out", str(out), "--teacher-python", "python"]) == 0
    assert fake_teacher.calls == []  # every reply of the second run was kept whole


def test_bad_input_fails_in_one_line_and_leaves_the_old_manifest(tmp_path, fake_teacher, capsys):
    manifest = corpus(tmp_path / "data")
    out = tmp_path / "en.jsonl"
    out.write_text("old\n")
    broken = tmp_path / "data" / "broken.jsonl"
    broken.write_text('{"audio": "audio/good.flac", "duration": 1.0}\n')  # no "text"
    assert recipe.main([str(manifest), str(broken), "--out", str(out), "--teacher-python", "python"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and str(broken) in error and len(error.splitlines()) == 1
    assert out.read_text() == "old\n" and fake_teacher.calls == []
    missing = tmp_path / "nowhere.jsonl"
    assert recipe.main([str(missing), "--out", str(out), "--teacher-python", "python"]) == 1
    assert "manifest not found" in capsys.readouterr().err
    french = write_manifest(
        tmp_path / "fr", [{"audio": "a.flac", "text": None, "duration": 1.0, "language": "fr"}]
    )
    assert recipe.main([str(french), "--out", str(out), "--teacher-python", "python"]) == 1
    assert "no untexted English clips" in capsys.readouterr().err


def test_an_unreadable_clip_stops_the_run_naming_the_file(tmp_path, monkeypatch, capsys):
    manifest = corpus(tmp_path / "data")

    class Failing(FakeTranscriber):
        def __call__(self, audio):
            return {"error": "LibsndfileError: format not recognised", "cpu_seconds": 0.0}

    monkeypatch.setattr(recipe, "TranscriberProcess", Failing)
    out = tmp_path / "en.jsonl"
    assert recipe.main([str(manifest), "--out", str(out), "--teacher-python", "python"]) == 1
    error = capsys.readouterr().err.strip()
    assert "good.flac: LibsndfileError: format not recognised" in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_the_real_teacher_transcribes_a_spoken_clip(tmp_path):
    python, speech = real_teacher_and_speech(tmp_path, "hello there, how are you")
    sf.write(tmp_path / "clip.flac", speech, 16000)
    (tmp_path / "broken.flac").write_bytes(b"not audio")
    teacher = recipe.TranscriberProcess(python, threads=1)
    try:
        reply = teacher(tmp_path / "clip.flac")
        broken = teacher(tmp_path / "broken.flac")
    finally:
        teacher.close()
    assert "hello" in reply["text"].lower() and -1.0 < reply["avg_logprob"] <= 0 and reply["tokens"] > 0
    assert 0 <= reply["no_speech_prob"] < 0.5 and reply["cpu_seconds"] > 0
    assert set(broken) == {"error", "cpu_seconds"} and "\n" not in broken["error"]
