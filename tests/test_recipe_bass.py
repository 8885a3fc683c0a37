"""The beneath-a-steel-sky recipe on tiny game files built here in the game's formats (no game data in the
repository): a ProPack method 1 packer written for the test, a made-up Huffman text tree, a fixture .deb."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.recipe_helpers import load_recipe_module

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "beneath-a-steel-sky"


def _load(name: str):
    return load_recipe_module("beneath-a-steel-sky", name)


@pytest.fixture(scope="module")
def sky():
    return _load("sky")


@pytest.fixture(scope="module")
def prepare():
    return _load("prepare")


# --- a ProPack method 1 packer (literal runs and matches, fixed 4-bit codes for 16 symbols per table) ---


class _Writer:
    """Bits LSB-first into 16-bit little-endian words, each word reserved where the reader will look for it: at
    the end of the output when its first bit is written; raw bytes go at the end of the output."""

    def __init__(self) -> None:
        self.out = bytearray(18)
        self.word = 0
        self.used = 16

    def bit(self, b: int) -> None:
        if self.used == 16:
            self.word, self.used = len(self.out), 0
            self.out += b"\0\0"
        if b:
            self.out[self.word + self.used // 8] |= 1 << (self.used % 8)
        self.used += 1

    def bits(self, value: int, n: int) -> None:
        for k in range(n):
            self.bit((value >> k) & 1)

    def value(self, v: int) -> None:
        """v as a symbol (its bit length; 4-bit canonical code = the symbol, MSB first) and its extra bits."""
        symbol = v if v < 2 else v.bit_length()
        for k in (3, 2, 1, 0):
            self.bit((symbol >> k) & 1)
        if symbol >= 2:
            self.bits(v - (1 << (symbol - 1)), symbol - 1)


def _tokens(data: bytes) -> list[tuple[bytes, tuple[int, int] | None]]:
    tokens, i, start = [], 0, 0
    while i < len(data):
        best = (0, 0)
        for back in range(1, min(i, 48) + 1):
            n = 0
            while i + n < len(data) and n < 300 and data[i + n - back] == data[i + n]:
                n += 1
            if n > best[1]:
                best = (back, n)
        if best[1] >= 3:
            tokens.append((data[start:i], best))
            i += best[1]
            start = i
        else:
            i += 1
    tokens.append((data[start:], None))
    return tokens


def rnc1_pack(data: bytes, chunks: int = 2) -> bytes:
    tokens = _tokens(data)
    cut = len(tokens) // chunks
    groups = [tokens[:cut] + [(b"", None)], tokens[cut:]] if chunks == 2 and cut else [tokens]
    w = _Writer()
    w.bits(0, 2)
    for group in groups:
        for _table in range(3):
            w.bits(16, 5)
            for _ in range(16):
                w.bits(4, 4)
        w.bits(len(group), 16)
        for index, (literal, match) in enumerate(group):
            w.value(len(literal))
            w.out += literal
            if index < len(group) - 1:
                assert match is not None
                w.value(match[0] - 1)
                w.value(match[1] - 2)
    out = w.out
    out[:17] = b"RNC\x01" + struct.pack(">II", len(data), len(out) - 18) + bytes(5)
    out[17] = len(groups)
    return bytes(out)


def test_rnc1_unpacks_what_the_test_packer_packed(sky):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    data = b"\x80" * 200 + noise + b"abcabcabcabcab" + noise[:100] + b"\x80" * 50 + b"xy"
    packed = rnc1_pack(data)
    assert packed[17] == 2 and len(packed) < len(data)
    assert sky.unpack_rnc1(packed) == data
    assert sky.unpack_rnc1(rnc1_pack(b"z", chunks=1)) == b"z"
    # a hand-made stream: flags 00, three tables of one 1-bit code (symbol 0, 2 and 1), one step: a literal run
    # of value 2 = symbol 2 with its one extra bit 0, then 2 raw bytes
    w = _Writer()
    w.bits(0, 2)
    for symbol in (2, 0, 1):
        w.bits(symbol + 1, 5)
        for s in range(symbol + 1):
            w.bits(1 if s == symbol else 0, 4)
    w.bits(1, 16)
    w.bit(0)  # symbol 2's code
    w.bit(0)  # its extra bit
    w.out += b"hi"
    w.out[:18] = b"RNC\x01" + struct.pack(">II", 2, len(w.out) - 18) + bytes(5) + b"\x01"
    assert sky.unpack_rnc1(bytes(w.out)) == b"hi"
    # corrupt data: a wrong size, or a match before the start, is an error, never a wrong file
    bad = bytearray(packed)
    bad[4:8] = struct.pack(">I", len(data) + 1)
    with pytest.raises(sky.SkyFormatError, match="header says"):
        sky.unpack_rnc1(bytes(bad))
    with pytest.raises(sky.SkyFormatError, match="signature"):
        sky.unpack_rnc1(b"RNC\x02" + bytes(20))


# --- the game's text format, with a made-up tree ---

ALPHABET = [0] + list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz .,'!?-0123456789")


def _tree() -> tuple[list[list[int]], dict[int, str]]:
    nodes: list[list[int] | None] = []
    codes: dict[int, str] = {}

    def build(symbols: list[int], path: str) -> int:
        k = len(nodes)
        nodes.append(None)
        if len(symbols) == 1:
            nodes[k] = [0, 0, symbols[0]]
            codes[symbols[0]] = path
        else:
            half = len(symbols) // 2
            left = build(symbols[:half], path + "0")
            right = build(symbols[half:], path + "1")
            nodes[k] = [left, right, 0]
        return k

    build(ALPHABET, "")
    return nodes, codes


def text_file(messages: list[str], codes: dict[int, str]) -> bytes:
    bits, skips = "", []
    for message in messages:
        code = "".join(codes[c] for c in message.encode("latin-1")) + codes[0]
        code += "0" * (len(code) % 2)
        assert len(code) // 2 <= 127
        skips.append(len(code) // 2)
        bits += code
    blocks = [sum(skips[i : i + 32]) for i in range(0, len(skips), 32)]
    skip_at = 4 + 2 * len(blocks)
    bits_at = skip_at + len(messages)
    bits += "0" * (-len(bits) % 8)
    stream = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    data = struct.pack(f"<HH{len(blocks)}H", skip_at, bits_at, *blocks) + bytes(skips) + stream
    return data.ljust(24, b"\0")


def test_text_decoder_reads_messages_across_blocks(sky, tmp_path):
    nodes, codes = _tree()
    (tmp_path / "tree.json").write_text(json.dumps({"about": "test", "nodes": nodes}))
    tree = sky.load_tree(tmp_path / "tree.json")
    messages = [f"Line {chr(65 + i % 26)} number" for i in range(70)]  # three blocks of 32
    messages[40] = "I had to INSPECT it."
    assert sky.read_text_section(text_file(messages, codes), tree) == messages
    (tmp_path / "bad.json").write_text(json.dumps({"nodes": [[1, 9, 0]]}))
    with pytest.raises(sky.SkyFormatError, match="outside"):
        sky.load_tree(tmp_path / "bad.json")


# --- whole game files and the recipe ---

SPEECH = {  # (section, line) of each speech file; text sections have 4 lines each
    (0, 0): "Hello THERE, Joey.",
    (0, 1): "Dev two.",
    (1, 2): "A test line...",
    (2, 0): "I 'ope it WORKS.",
    (2, 1): "Room 101 is shut.",  # digits: dropped
    (3, 3): "Stored plainly.",
    (4, 0): "Held out one.",
    (4, 1): "Held out two.",
    (5, 0): "Five.",
    (6, 1): "Six.",
    (7, 2): "Seven.",
}
NARRATION = (59494, 59600)  # kept as they are
NARRATION_SHORT, NARRATION_LONG = 59601, 59602  # under 0.5 s: dropped; over 30 s: cut in two


def speech_blob(pcm: bytes, packed: bool) -> bytes:
    total = 22 + len(pcm)
    header = [0] * 11
    header[0] = (0x80 if packed else 0) | (total >> 16) << 8
    header[6] = total & 0xFFFF
    head = struct.pack("<11H", *header)
    return head + (rnc1_pack(pcm) if packed else pcm)


def tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * 11025)) / 11025
    return np.round(128 + 60 * np.sin(2 * np.pi * 300 * t)).astype(np.uint8).tobytes() + b"\x80" * 400


def build_game(folder: Path, codes: dict[int, str], corrupt: int | None = None) -> dict[int, float]:
    """sky.dnr + sky.dsk in ``folder``; the samples' duration of every speech file by number."""
    files: dict[int, tuple[bytes, bool]] = {}
    for section in range(8):
        lines = [SPEECH.get((section, line), f"Not voiced {line}.") for line in range(4)]
        files[60600 + section] = (text_file(lines, codes), True)
    seconds = {}
    for index, (section, line) in enumerate(sorted(SPEECH)):
        number = 50000 + (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)[section] + line
        seconds[number] = 0.3 + 0.05 * index
        files[number] = (speech_blob(tone(seconds[number]), packed=(section, line) != (3, 3)), False)
    for k, number in enumerate(NARRATION):
        seconds[number] = 0.8 + 0.1 * k
        files[number] = (speech_blob(tone(seconds[number]), packed=True), False)
    for number, length in ((NARRATION_SHORT, 0.05), (NARRATION_LONG, 31.0)):
        seconds[number] = length
        files[number] = (speech_blob(tone(length), packed=False), False)
    if corrupt is not None:
        blob = bytearray(files[corrupt][0])
        blob[26:30] = struct.pack(">I", 7)  # the RNC header's unpacked size
        files[corrupt] = (bytes(blob), False)
    dsk, dnr = bytearray(), bytearray(struct.pack("<I", len(files)))
    for k, (number, (blob, stored)) in enumerate(sorted(files.items())):
        dsk += bytes(-len(dsk) % 16)
        offset = len(dsk) >> 4 | 0x800000 if k % 2 else len(dsk)  # both offset forms
        dsk += blob
        dnr += struct.pack("<H", number) + offset.to_bytes(3, "little")
        dnr += (len(blob) | (0x800000 if stored else 0)).to_bytes(3, "little")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sky.dnr").write_bytes(bytes(dnr))
    (folder / "sky.dsk").write_bytes(bytes(dsk))
    return {n: len(tone(s)) / 11025 for n, s in seconds.items()}


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    folder = tmp_path_factory.mktemp("game")
    nodes, codes = _tree()
    (folder / "tree.json").write_text(json.dumps({"nodes": nodes}))
    durations = build_game(folder / "data", codes)
    return folder, durations, codes


def _deb(folder: Path, data: Path) -> Path:
    root = folder / "debroot"
    target = root / "usr/share/scummvm/beneath-a-steel-sky"
    target.mkdir(parents=True)
    for name in ("sky.dnr", "sky.dsk"):
        shutil.copy(data / name, target / name)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: beneath-a-steel-sky\nVersion: 0.0372-8\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    deb = folder / "beneath-a-steel-sky_0.0372-8_all.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


def _rows(out: Path) -> dict[str, list[dict]]:
    return {
        split: [json.loads(x) for x in (out / f"{split}.jsonl").read_text().splitlines()]
        for split in ("train", "dev", "test", "unlabelled")
    }


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build the fixture package")
def test_prepare_from_a_deb_splits_by_section_and_never_writes_section_4(prepare, game, tmp_path):
    folder, durations, _ = game
    deb = _deb(tmp_path, folder / "data")
    out = tmp_path / "out"
    args = ["--deb", str(deb), "--out", str(out), "--text-tree", str(folder / "tree.json"), "--jobs", "2"]
    assert prepare.main(args) == 0
    rows = _rows(out)
    assert {r["section"] for r in rows["dev"]} == {0} and {r["section"] for r in rows["test"]} == {1}
    assert {r["section"] for r in rows["train"]} == {2, 3, 5, 6, 7}
    texts = {r["clip"]: r["text"] for split in rows.values() for r in split}
    assert texts["50000"] == "Hello there, Joey." and texts["51100"] == "I ope it works."  # normalised
    assert "51101" not in texts  # digits: not in the model's text
    assert texts["50602"] == "A test line."
    assert [r["text"] for r in rows["unlabelled"]] == [None] * 4
    pieces = {f"{NARRATION_LONG}-part00", f"{NARRATION_LONG}-part01"}
    assert {r["clip"] for r in rows["unlabelled"]} == {str(n) for n in NARRATION} | pieces
    # section 4: no row, no text id, no audio file anywhere
    every = [r for split in rows.values() for r in split]
    assert not [r for r in every if r["section"] == 4 or (r["text_id"] or 0) >> 12 == 4]
    assert not [p for p in out.rglob("*.flac") if p.stem in {"53380", "53381"}]
    for row in every:
        audio, rate = sf.read(out / row["audio"])
        assert rate == 16000 and audio.ndim == 1
        whole = durations[int(row["clip"].split("-")[0])]
        share = 2 if row["clip"] in pieces else 1
        assert abs(row["duration"] - whole / share) < 0.01  # the right file's samples
    # a rerun skips finished steps and gives the same manifests
    before = (out / "train.jsonl").read_text()
    assert prepare.main(args) == 0 and (out / "train.jsonl").read_text() == before


def test_held_out_section_is_refused_in_code(prepare, tmp_path):
    with pytest.raises(prepare.HeldOutError):
        prepare.split_of(4, 0, 1)
    row = {"file": 53380, "text": "Held out.", "section": 4, "text_id": 4 << 12, "split": "train"}
    with pytest.raises(prepare.HeldOutError):
        prepare.manifests(tmp_path, [row])
    with pytest.raises(prepare.HeldOutError):  # whatever its section field says, the text id counts
        prepare.manifests(tmp_path, [{**row, "section": 2}])
    with pytest.raises(SystemExit):
        prepare.main(["--test-section", "4", "--out", str(tmp_path)])
    assert 4 not in prepare.SECTIONS


def test_bad_inputs_are_one_line_errors_and_leave_no_manifest(prepare, game, tmp_path, capsys):
    folder, _, codes = game
    tree = str(folder / "tree.json")
    out = tmp_path / "out"
    build_game(tmp_path / "bad", codes, corrupt=50001)
    assert prepare.main(["--data-dir", str(tmp_path / "bad"), "--out", str(out), "--text-tree", tree]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "50001" in err
    assert not list(out.glob("*.jsonl"))
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "sky.dnr").write_bytes(b"\x05\0\0\0abc")
    (tmp_path / "short" / "sky.dsk").write_bytes(b"")
    assert prepare.main(["--data-dir", str(tmp_path / "short"), "--out", str(out), "--text-tree", tree]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sky.dnr" in err
    assert (
        prepare.main(["--data-dir", str(folder / "data"), "--out", str(out), "--text-tree", "no.json"]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no.json" in err
    assert prepare.main(["--deb", str(tmp_path / "none.deb"), "--out", str(out), "--text-tree", tree]) == 1
    assert "none.deb" in capsys.readouterr().err
    (tmp_path / "junk.deb").write_bytes(b"not a deb")
    assert prepare.main(["--deb", str(tmp_path / "junk.deb"), "--out", str(out), "--text-tree", tree]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "junk.deb" in err
    assert not list(out.glob("*.jsonl"))
