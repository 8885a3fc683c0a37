"""The amazon-queen recipe on a tiny data file built here in the game's format (no game data in the repository)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.media_helpers import run_ffmpeg
from tests.recipe_helpers import load_recipe_module

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "amazon-queen"
HEADER = b"AmBk" + bytes(16)  # the 20-byte AMOS bank header the reader skips


def _load(name: str):
    return load_recipe_module("amazon-queen", name)


@pytest.fixture(scope="module")
def queen():
    return _load("queen")


@pytest.fixture(scope="module")
def prepare():
    return _load("prepare")


def pascal(text: str, pos: int, align: int) -> bytes:
    """A length-prefixed string written at ``pos``, padded so the next one starts on ``align`` (not when empty)."""
    raw = bytes([len(text)]) + text.encode("latin-1")
    end = pos + len(raw)
    if text and end % align:
        raw += bytes(align - end % align)
    return raw


def dog_file(
    talk_key: int, joe: list[tuple[int, str]], partner: list[tuple[int, str]], greeting: str, repeat: str
):
    levels = 1
    body = bytearray(32 + levels * 96)
    struct.pack_into(">hhhhh", body, 0, levels, 1, talk_key, len(joe), len(partner))
    for rows, pointer_at in ((joe, None), (partner, 22)):
        if pointer_at is not None:
            struct.pack_into(">H", body, pointer_at, len(body))
        for line_id, text in rows:
            body += struct.pack(">hh", 0, line_id)
            body += pascal(text, len(body), 4)
    struct.pack_into(">H", body, 26, len(body))
    body += pascal(greeting, len(body), 1) + pascal(repeat, len(body) + 1 + len(greeting), 1)
    return HEADER + bytes(body)


def cut_file(sentences: list[str], talk_file: str) -> bytes:
    body = bytearray(12)
    struct.pack_into(">hhh", body, 0, 0, -len(sentences), 0)
    struct.pack_into(">H", body, 8, len(body))
    body += pascal("", len(body), 2)  # the entry string
    for sentence in sentences:
        body += pascal(sentence, len(body), 2)
    struct.pack_into(">H", body, 10, len(body))
    body += struct.pack(">H", 0)  # no animation banks
    body += pascal(talk_file, len(body), 2)
    return HEADER + bytes(body)


def jas_files(descriptions: list[str], responses: list[str]) -> tuple[bytes, bytes]:
    rooms, names = 1, 1
    queen_jas = HEADER + struct.pack(">HHHH", rooms, names, 0, len(descriptions))
    lines = descriptions + ["a name"] + ["a room"] + ["verb"] * 12 + responses
    return queen_jas, "\r\n".join(lines + [""]).encode("latin-1")


def build_data_file(path: Path, entries: dict[str, bytes]) -> Path:
    names = sorted(entries)
    offset = 15 + 21 * len(names)
    toc, blobs = b"", b""
    for name in names:
        toc += (
            name.encode().ljust(12, b"\0")
            + b"\x01"
            + struct.pack(">II", offset + len(blobs), len(entries[name]))
        )
        blobs += entries[name]
    path.write_bytes(b"QTBL" + b"CEM10\0" + b"\0\0" + b"\x01" + struct.pack(">H", len(names)) + toc + blobs)
    return path


@pytest.fixture(scope="module")
def mp3(tmp_path_factory) -> bytes:
    """A short 11,025 Hz mono MP3 like the game's clips (a tone: the recipe does not listen to it)."""
    folder = tmp_path_factory.mktemp("mp3")
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(11025) / 11025)).astype(np.float32)
    sf.write(folder / "tone.wav", tone, 11025)
    run_ffmpeg("-i", folder / "tone.wav", "-ar", "11025", "-ac", "1", "-b:a", "16k", folder / "tone.mp3")
    return (folder / "tone.mp3").read_bytes()


def game_entries(mp3: bytes) -> dict[str, bytes]:
    queen_jas, queen2_jas = jas_files(["It's a rock*24", "c2c.CUT"], ["I can't do that*02"] + ["No"] * 39)
    entries = {
        # SPARKY is a test character, HENRY a dev one, BOB a training one
        "BOB1.DOG": dog_file(
            7,
            [(0, "Hi there!*03"), (9, "Bye now.*02")],
            [(9, "*GDSee ya pal.*01Come back!")],
            "*01Hello again.",
            "Me again.",
        ),
        "SPARKY1.DOG": dog_file(12, [(0, "Hey Sparky.")], [(17, "What do you want?*05Go away.")], "", ""),
        "HENRY1.DOG": dog_file(24, [(0, "Hello Henry.")], [(30, "The third door on the left.")], "", ""),
        "C1A.CUT": cut_file(["*FL", "Look out!*01Too late."], "bob1.dog"),
        "C9B.CUT": cut_file(["I'll be back."], "sparky1.dog"),
        "QUEEN.JAS": queen_jas,
        "QUEEN2.JAS": queen2_jas,
        "1000SSSS.SB": mp3,  # a sound effect: no text, never in a manifest
    }
    clips = [
        "07SSSSJ1",
        "070009J1",
        "070009P1",
        "070009P2",
        "07XXXXP2",
        "07XXXXJ1",
        "12SSSSJ1",
        "120011P1",
        "120011P2",
        "24SSSSJ1",
        "24001EP1",
        "C1A__021",
        "C1A__022",
        "C9B__011",
        "JOE00411",
        "JOE00011",
    ]
    for clip in clips:
        entries[f"{clip}.SB"] = mp3
    return entries


def test_reader_maps_every_text_source_to_its_clips(queen, mp3, tmp_path):
    path = build_data_file(tmp_path / "queen.1c", game_entries(mp3))
    data, toc = queen.read_file(path)
    lines = {line.clip: line for line in queen.read_lines(data, toc)}
    assert (
        lines["070009P1"].text == "See ya pal." and lines["070009P1"].speaker == "BOB"
    )  # *GD does not split
    assert lines["070009P2"].text == "Come back!"
    assert lines["07SSSSJ1"].speaker == "JOE" and lines["07SSSSJ1"].text == "Hi there!"
    assert lines["07XXXXP2"].text == "Hello again." and lines["07XXXXJ1"].text == "Me again."
    assert lines["C1A__022"].text == "Too late." and lines["C1A__022"].speaker == "CUT:C1A"
    assert lines["JOE00411"].text == "It's a rock" and lines["JOE00011"].text == "I can't do that"
    assert "1000SSSS" not in lines
    assert queen.split_parts("A*01*01B") == ["A", "", "B"]


def test_normalise_follows_the_project_text_rules(queen):
    assert queen.normalise('Sorry pal, but I don\'t speak "APE"...') == "Sorry pal, but I don't speak ape."
    assert queen.normalise("Well... maybe") == "Well, maybe."
    assert queen.normalise("<sneeze>") is None
    assert queen.normalise("He was born in 1922.") is None  # digits: not in the model's text
    assert queen.normalise("  ") is None


def test_prepare_writes_manifests_split_by_character(prepare, mp3, tmp_path):
    data_file = build_data_file(tmp_path / "queen.1c", game_entries(mp3))
    out = tmp_path / "out"
    assert prepare.main(["--data-file", str(data_file), "--out", str(out), "--jobs", "2"]) == 0
    rows = {
        split: [json.loads(x) for x in (out / f"{split}.jsonl").read_text().splitlines()]
        for split in ("train", "dev", "test")
    }
    speakers = {split: {r["speaker"] for r in split_rows} for split, split_rows in rows.items()}
    assert speakers["test"] == {"SPARKY"} and speakers["dev"] == {"HENRY"}
    assert "SPARKY" not in speakers["train"] and "HENRY" not in speakers["train"]
    train_clips = {r["clip"] for r in rows["train"]}
    assert "C1A__022" in train_clips and "C9B__011" not in train_clips  # Sparky's scene is used nowhere
    row = next(r for r in rows["test"] if r["clip"] == "120011P2")
    assert row["text"] == "Go away."
    audio, rate = sf.read(out / row["audio"])
    assert rate == 16000 and audio.ndim == 1 and abs(row["duration"] - len(audio) / rate) < 1e-3
    assert 0.9 < row["duration"] < 1.3


def test_missing_clip_is_one_line_error_and_no_manifest(prepare, mp3, tmp_path, capsys):
    entries = game_entries(mp3)
    entries["070009P1.SB"] = b""  # present in the table but empty
    data_file = build_data_file(tmp_path / "queen.1c", entries)
    out = tmp_path / "out"
    assert prepare.main(["--data-file", str(data_file), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "070009P1" in err and "missing" in err
    assert not list(out.glob("*.jsonl"))


def test_malformed_clip_and_data_file_are_one_line_errors(prepare, mp3, tmp_path, capsys):
    entries = game_entries(mp3)
    entries["070009P1.SB"] = b"not an mp3 stream" * 4
    out = tmp_path / "out"
    assert (
        prepare.main(["--data-file", str(build_data_file(tmp_path / "a.1c", entries)), "--out", str(out)])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "070009P1" in err and "decode" in err
    assert not list(out.glob("*.jsonl"))
    (tmp_path / "b.1c").write_bytes(b"MZ not a queen file")
    assert prepare.main(["--data-file", str(tmp_path / "b.1c"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "b.1c" in err and "QTBL" in err
    assert prepare.main(["--deb", str(tmp_path / "none.deb"), "--out", str(out)]) == 1
    assert "none.deb" in capsys.readouterr().err


def test_codec_passes_clips_through_the_games_channel(tmp_path, capsys):
    codec = _load("codec")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        sf.write(tmp_path / f"w{i}.flac", (0.3 * rng.standard_normal(16000)).astype(np.float32), 16000)
        rows.append({"audio": f"w{i}.flac", "text": f"clip {i}", "duration": 1.0})
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rest = tmp_path / "rest" / "train-wide.jsonl"
    args = [str(manifest), str(tmp_path / "out"), "--share", "0.67", "--jobs", "2", "--rest", str(rest)]
    assert codec.main(args) == 0
    out = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert len(out) == 2 and {r["text"] for r in out} < {r["text"] for r in rows}
    # the rows left wideband: the others, audio made absolute, so that together they hold every clip once
    left = [json.loads(line) for line in rest.read_text().splitlines()]
    assert sorted(r["text"] for r in out + left) == [r["text"] for r in rows]
    assert all(Path(r["audio"]).is_absolute() and "channel" not in r for r in left)
    for row in out:
        samples, rate = sf.read(row["audio"])
        assert rate == 16000 and row["channel"] == codec.CHANNEL and abs(row["duration"] - 1.0) < 0.25
        power = np.abs(np.fft.rfft(samples)) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / rate)
        # white noise had a third of its power above 5.6 kHz; the 11,025 Hz channel keeps none of it
        assert power[freqs > 5600].sum() / power.sum() < 1e-3
    # a clip ffmpeg cannot read: one line naming it, and no manifest
    (tmp_path / "w0.flac").write_bytes(b"not audio")
    assert codec.main([str(manifest), str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "w0.flac" in err[0]
    assert not (tmp_path / "bad" / "train.jsonl").exists()
