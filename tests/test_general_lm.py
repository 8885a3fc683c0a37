"""The general-lm recipe's text gathering: each source read from a tiny fixture, the transcripts' normalisation,
held-out sentences kept out, and the vocabulary rule."""

import gzip
import importlib.util
import struct
import zlib
from pathlib import Path

import pytest

from samba_cli.decoding.lm import Lexicon

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "general-lm"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"general_lm_{name}", RECIPE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def text():
    return _load("general_text")


@pytest.fixture(scope="module")
def build():
    return _load("build")


def _sword_module(folder: Path, blocks: list[str]) -> None:
    """A zText testament as SWORD writes it: zlib blocks in nt.bzz, (offset, size, length) per block in nt.bzs."""
    folder.mkdir(parents=True)
    data, index = b"", b""
    for block in blocks:
        raw = block.encode("utf-8")
        packed = zlib.compress(raw)
        index += struct.pack("<III", len(data), len(packed), len(raw))
        data += packed
    (folder / "nt.bzz").write_bytes(data)
    (folder / "nt.bzs").write_bytes(index)


def test_sword_module_text_without_markup_notes_or_headings(text, tmp_path):
    osis = (
        '<title type="main">The Good News</title><chapter n="1"/><w lemma="strong:G1">The</w> '
        '<w lemma="x">book</w> of the kings,<note placement="foot">1:1 a footnote here</note> '
        'which was written long ago. <div type="x-p"/>And it said “be glad” to them all.'
    )
    _sword_module(tmp_path / "web", [osis, "Then they went home together in peace."])
    paragraphs = text.sword_ztext(tmp_path / "web")
    assert list(text.sentences(paragraphs)) == [
        "the book of the kings which was written long ago",
        "and it said be glad to them all",
        "then they went home together in peace",
    ]


def test_sword_module_missing_is_one_line(text, tmp_path):
    with pytest.raises(SystemExit, match="no SWORD zText module"):
        text.sword_ztext(tmp_path)


def test_dictd_drops_headwords_citations_and_labels(text, tmp_path):
    raw = (
        "00-database-info\n     This file was converted by dictfmt.\n\n"
        'Abdication \\Ab`di*ca"tion\\, n. [L. abdicatio: cf. F.\n   abdication.]\n'
        "   The act of abdicating; the renunciation of a high office\n   by its holder. --Bailey.\n"
        "   [1913 Webster]\n\n"
        "   2. (Zool.) Having abdominal fins as {abdominal fishes}.\n"
    )
    path = tmp_path / "gcide.dict.dz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(raw)
    got = list(text.sentences(text.dictd(path)))
    assert got == [
        "the act of abdicating the renunciation of a high office by its holder",
        "having abdominal fins as abdominal fishes",
    ]
    assert not any("webster" in s or "bailey" in s or "zool" in s for s in got)


def test_wordnet_definitions_and_examples(text, tmp_path):
    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided\n"
        "00982679 04 n 01 strategy 0 001 @ 00981830 n 0000 | a plan of action for a long time; "
        'an elaborate scheme of many parts; "they worked out a clever strategy together"  \n'
    )
    for pos in ("verb", "adj", "adv"):
        (tmp_path / f"data.{pos}").write_text("")
    got = list(text.sentences(text.wordnet(tmp_path)))
    assert got == [
        "a plan of action for a long time",
        "an elaborate scheme of many parts",
        "they worked out a clever strategy together",
    ]


def test_normalisation_is_the_transcripts(text):
    # ASCII folding, no digits, 3-20 words, then the decoder's words (lower case, inner apostrophes kept)
    got = list(text.sentences(["Café au lait isn't bad, Joe! It costs 3 pounds. Go.", "A " * 25 + "end."]))
    assert got == ["cafe au lait isn't bad joe"]
    # but "act" and "scene", which the books' rules drop as stage directions, are ordinary words here
    assert list(text.sentences(["The last act was a scene to remember."])) == [
        "the last act was a scene to remember"
    ]


def test_held_out_sentences_are_dropped_wherever_they_occur(text):
    held = text.HeldOut(["he went up to the big house", "go away"])
    assert "then he went up to the big house again" in held  # a long one anywhere
    assert "go away" in held  # a short one as a whole sentence
    assert "please go away now" not in held  # but not inside another
    assert "he went up to the big hill" not in held


def test_gather_keeps_each_sentence_once_and_counts(text):
    held = text.HeldOut(["a cat sat on the mat"])
    lines, counts = text.gather(
        {
            "one": ["The dog ran away fast. The dog ran away fast.", "Then a cat sat on the mat quietly."],
            "two": ["The dog ran away fast. Birds sing in the morning."],
        },
        held,
    )
    assert lines == ["the dog ran away fast", "birds sing in the morning"]
    assert counts == {"one": (1, 1), "two": (1, 0)}


def test_sources_left_out_are_not_read(text, monkeypatch, tmp_path):
    read = []

    def reader(kind):
        return lambda path: read.append((kind, path.name)) or [kind]

    monkeypatch.setattr(text, "sword_ztext", reader("sword"))
    monkeypatch.setattr(text, "dictd", reader("dictd"))
    monkeypatch.setattr(text, "wordnet", reader("wordnet"))
    monkeypatch.setattr(text, "shakespeare_milton", lambda download: {"shakespeare": ["s"], "milton": ["m"]})
    sources = text.read_sources(tmp_path, tmp_path, frozenset({"gcide", "milton"}))
    assert list(sources) == ["web", "devil", "jargon", "wordnet", "shakespeare"]
    assert ("dictd", "gcide.dict.dz") not in read and ("dictd", "devil.dict.dz") in read


def test_held_sentences_from_manifests_and_pools(text, tmp_path):
    (tmp_path / "dev.jsonl").write_text('{"audio": "a.flac", "text": "Go away, Joe!"}\n')
    (tmp_path / "sentences.dev.txt").write_text("alice\tShe said nothing at all.\n")
    got = text.held_sentences([tmp_path / "dev.jsonl", tmp_path / "sentences.dev.txt"])
    assert got == ["go away joe", "she said nothing at all"]
    with pytest.raises(SystemExit, match="not found"):
        text.held_sentences([tmp_path / "missing.jsonl"])


def test_vocabulary_rule(build, tmp_path):
    general = tmp_path / "general.txt"
    general.write_text("the zorp ran\nthe cat ran\nthe quux sat\n")
    vocab = build.vocabulary(general, ["Klunk said hello"], Lexicon(["cat", "dog"]))
    # transcripts' words, words seen twice, and words seen once that the lexicon lists; "zorp"/"quux" are out
    assert vocab == ["cat", "hello", "klunk", "ran", "said", "the"]
