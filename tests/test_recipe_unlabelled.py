"""The unlabelled-voices recipe on tiny fixture .deb files built here with dpkg-deb (no package data in the
repository): where each package keeps its speech, the 0.5 s / 30 s rules, the manifests, the held-out English
Asterisk prompts refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.recipe_helpers import load_recipe_module

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "unlabelled-voices"

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build fixture .debs"
)


def _load(name: str):
    return load_recipe_module("unlabelled-voices", name)


@pytest.fixture(scope="module")
def prepare():
    return _load("prepare")


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def build_deb(folder: Path, package: str, files: dict[str, bytes | np.ndarray | tuple]) -> Path:
    """A .deb of ``package`` holding ``files`` (path -> bytes, or (samples, rate, format) written as audio)."""
    root = folder / f"root-{package}"
    for path, content in {**files, f"usr/share/doc/{package}/copyright": b"License: test-licence\n"}.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            samples, rate, fmt = content
            sf.write(target, samples, rate, format=fmt, **({"subtype": "VORBIS"} if fmt == "OGG" else {}))
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    deb = folder / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


def wz_zip(folder: Path) -> bytes:
    """warzone2100's base.wz: a stored zip with speech in audio/<folder>/ and sound effects in audio/sfx/."""
    path = folder / "base.wz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, seconds in (("audio/tutorial/tut1.ogg", 1.5), ("audio/sfx/boom.ogg", 1.0)):
            sf.write(folder / "clip.ogg", tone(seconds, 11025), 11025, format="OGG", subtype="VORBIS")
            archive.write(folder / "clip.ogg", name)
    return path.read_bytes()


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("debs")
    voices = "usr/share/games/hedgewars/Data/Sounds/voices"
    build_deb(
        folder,
        "hedgewars-data",
        {
            f"{voices}/British/Hello.ogg": (tone(1.0, 44100, 2), 44100, "OGG"),  # stereo 44.1 kHz
            f"{voices}/Default_pl/Oops.ogg": (tone(0.8, 44100, 2), 44100, "OGG"),
            f"{voices}/British/Uh.ogg": (tone(0.3, 44100), 44100, "OGG"),  # too short: dropped
            "usr/share/games/hedgewars/Data/Sounds/explosion.ogg": (
                tone(1.0, 44100),
                44100,
                "OGG",
            ),  # not a voice
        },
    )
    sounds = "usr/share/asterisk/sounds/fr_CA_f_June"
    build_deb(
        folder,
        "asterisk-core-sounds-fr-wav",
        {
            f"{sounds}/hello.wav": (tone(2.0, 8000), 8000, "WAV"),
            f"{sounds}/digits/1.wav": (tone(0.6, 8000), 8000, "WAV"),
            f"{sounds}/silence/5.wav": (np.zeros(40000, np.float32), 8000, "WAV"),  # no speech
            f"{sounds}/long.wav": (tone(65.0, 8000), 8000, "WAV"),  # cut into 3 pieces of 21.7 s
            f"{sounds}/is.wav": (np.zeros(0, np.float32), 8000, "WAV"),  # no samples (as in the Russian set)
        },
    )
    build_deb(folder, "warzone2100-data", {"usr/share/games/warzone2100/base.wz": wz_zip(folder)})
    return folder


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prepare_writes_one_manifest_per_package_and_a_combined_one(prepare, debs, tmp_path):
    out = tmp_path / "out"
    packages = ["hedgewars-data", "asterisk-core-sounds-fr-wav", "warzone2100-data"]
    args = ["--debs", str(debs), "--out", str(out), "--packages", *packages, "--jobs", "2"]
    assert prepare.main(args) == 0
    rows = {package: _rows(out / f"{package}.jsonl") for package in packages}
    every = _rows(out / "unlabelled.jsonl")
    assert sorted(r["clip"] for r in every) == sorted(r["clip"] for rs in rows.values() for r in rs)
    assert all(r["text"] is None for r in every)
    hedgewars = {r["clip"].rsplit("__", 1)[1]: r for r in rows["hedgewars-data"]}
    assert set(hedgewars) == {"Hello", "Oops"}  # the short one and the sound effect left out
    assert hedgewars["Hello"]["language"] == "en" and hedgewars["Oops"]["language"] == "pl"
    assert hedgewars["Hello"]["speaker"] == "hedgewars-data/British"
    asterisk = rows["asterisk-core-sounds-fr-wav"]
    assert not [r for r in asterisk if "silence" in r["source"] or r["clip"].endswith("__is")]
    assert len(asterisk) == 5  # hello, 1, three pieces of long
    long = sorted(r["duration"] for r in asterisk if "long" in r["clip"])
    assert len(long) == 3 and all(21.0 < d <= 30.0 for d in long) and abs(sum(long) - 65.0) < 0.1
    assert {r["language"] for r in asterisk} == {"fr"}
    (warzone,) = rows["warzone2100-data"]
    assert "audio/tutorial/tut1.ogg" in warzone["source"] and abs(warzone["duration"] - 1.5) < 0.05
    for row in every:
        samples, rate = sf.read(out / row["audio"])
        assert rate == 16000 and samples.ndim == 1 and 0.5 <= row["duration"] <= 30.0
        assert abs(len(samples) / rate - row["duration"]) < 1e-3
        assert row["source"].split(":")[0] in packages
    assert (out / "licences" / "hedgewars-data.copyright").read_text() == "License: test-licence\n"
    before = (out / "unlabelled.jsonl").read_text()
    assert prepare.main(args) == 0 and (out / "unlabelled.jsonl").read_text() == before  # a rerun resumes


def test_english_asterisk_prompts_are_refused(prepare, debs, tmp_path, capsys):
    sources = _load("sources")
    for package in ("asterisk-core-sounds-en", "asterisk-core-sounds-en-wav", "asterisk-core-sounds-en-gsm"):
        with pytest.raises(ValueError, match="held out"):
            sources.refuse_held_out(package)
        assert prepare.main(["--packages", package, "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "held out" in err
    assert not [p for p in sources.SOURCES if p.startswith("asterisk-core-sounds-en")]
    with pytest.raises(ValueError, match="English"):
        sources.refuse_held_out(
            "asterisk-core-sounds-fr-wav", "usr/share/asterisk/sounds/en_US_f_Allison/a.wav"
        )
    sources.refuse_held_out("asterisk-core-sounds-fr-wav", "usr/share/asterisk/sounds/fr_CA_f_June/a.wav")
    # an allowed package that carries English prompts: refused before anything is converted or written
    english = tmp_path / "english"
    english.mkdir()
    build_deb(
        english,
        "asterisk-core-sounds-it-wav",
        {"usr/share/asterisk/sounds/en/hello.wav": (tone(1.0, 8000), 8000, "WAV")},
    )
    out = tmp_path / "out2"
    assert (
        prepare.main(["--debs", str(english), "--packages", "asterisk-core-sounds-it-wav", "--out", str(out)])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "English" in err
    assert not list(out.glob("*.jsonl")) and not list(out.rglob("*.flac"))


def test_bad_packages_are_one_line_errors_and_leave_no_manifest(prepare, debs, tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "klettres-data_1.0-1_all.deb").write_bytes(b"not a deb")
    shutil.copy(debs / "hedgewars-data_1.0-1_all.deb", bad)
    args = ["--debs", str(bad), "--out", str(out), "--packages", "hedgewars-data", "klettres-data"]
    assert prepare.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "klettres-data_1.0-1_all.deb" in err
    assert not list(out.glob("*.jsonl"))  # hedgewars was converted, but no manifest is written without all
    assert prepare.main(["--debs", str(bad), "--out", str(out), "--packages", "fillets-ng-data-cs"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fillets-ng-data-cs" in err
    # one clip ffmpeg cannot decode among good ones: the batch falls back to clip by clip and names it
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    voices = "usr/share/games/hedgewars/Data/Sounds/voices/Pirate"
    build_deb(
        corrupt,
        "hedgewars-data",
        {f"{voices}/Arr.ogg": (tone(1.0, 44100), 44100, "OGG"), f"{voices}/Bad.ogg": b"OggS not really" * 9},
    )
    assert prepare.main(["--debs", str(corrupt), "--out", str(out), "--packages", "hedgewars-data"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Pirate/Bad.ogg" in err and "decode" in err
    assert not list(out.glob("*.jsonl"))
    # a package with no speech where the recipe expects it
    empty = tmp_path / "empty"
    empty.mkdir()
    build_deb(empty, "fillets-ng-data-nl", {"usr/share/games/fillets-ng/readme.txt": b"hi"})
    assert prepare.main(["--debs", str(empty), "--out", str(out), "--packages", "fillets-ng-data-nl"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no speech" in err
    assert prepare.main(["--out", str(out), "--packages", "not-a-package"]) == 1
    assert "not a package this recipe knows" in capsys.readouterr().err
    assert not list(out.glob("*.jsonl"))
