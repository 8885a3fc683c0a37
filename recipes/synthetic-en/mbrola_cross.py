"""English read by the MBROLA voices of other languages: new speakers for the `extra4` split.

Debian packages about 70 MBROLA diphone voices; four speak English (us1, us2, us3, en1, used by the `extra`
split). The others are recordings of other speakers in other languages. espeak-ng writes the phones, durations
and pitch of an English sentence for an English MBROLA voice (`--pho`); each phone is then replaced by the
nearest phone the target voice has (SAMPA symbols are shared across most of the databases: English's /T/
becomes /s/ or /t/ where a voice lacks it, /w/ becomes /u/ or /v/, a diphthong two vowels), and `mbrola -e`
renders the result with the target voice. The speech is English with a foreign accent, in a new timbre.

Which phones a voice has is probed once per voice (a phone between silences, or between two /a/ or two /t/,
either renders or is a fatal error) and cached in memory per process.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from functools import cache

MBROLA_DIR = "/usr/share/mbrola"

# voice (Debian package mbrola-<voice>) -> female; the gender from each database's own description where it
# states one. Left out: it1, it2 and nl1 name their phones otherwise (nearly no English phone maps); de8 lacks
# /p/ in the probe's contexts; the Spanish and Brazilian Portuguese voices (es1-es4, br1, br3, br4; five vowels
# for English's twelve) and af1 came out hardest to understand (the bundled stage-13 model read a 300-utterance
# sample of them at 91-102% greedy WER, of the others at 54-90%).
VOICES = {
    "cz2": False,
    "de1": True,
    "de2": False,
    "de3": True,
    "de4": False,
    "de5": True,
    "de6": False,
    "de7": True,
    "fr1": False,
    "fr2": True,
    "fr3": False,
    "fr4": True,
    "fr5": False,
    "fr6": False,
    "fr7": False,
    "hu1": True,
    "ic1": False,
    "it3": False,
    "it4": True,
    "nl2": False,
    "nl3": True,
    "pl1": True,
    "ro1": False,
    "sw1": False,
    "sw2": True,
}

# the English MBROLA voice whose phones espeak-ng writes, by the target voice's gender: us1 is female, us2 male
SOURCE = {True: "us1", False: "us2"}

# English MBROLA phone (espeak-ng's mb-us1 / mb-us2 output) -> candidates in order of preference; a candidate
# of several phones (space-separated) is used when the voice has each of them; "" drops the phone
CANDIDATES: dict[str, list[str]] = {
    "p_h": ["p_h", "p"],
    "t_h": ["t_h", "t"],
    "k_h": ["k_h", "k"],
    "4": ["4", "d", "t", "r"],
    "r": ["r\\", "r", "R", "4"],
    "r=": ["3`", "@`", "3:", "9", "@ r", "e r", "E r", "2", "@", "e"],
    "AI": ["AI", "aI", "ai", "a I", "a i", "a j", "a: i", "O i"],
    "EI": ["EI", "eI", "ei", "e I", "e i", "e j", "e:", "e"],
    "@U": ["@U", "oU", "ou", "o U", "o u", "o:", "o"],
    "aU": ["aU", "au", "a U", "a u", "a w", "a: u", "O u"],
    "OI": ["OI", "OY", "Oy", "O Y", "O I", "O i", "o i", "o j"],
    "{": ["{", "E", "a", "e"],
    "V": ["V", "6", "a", "@", "2", "o"],
    "A": ["A", "A:", "a:", "a", "Q"],
    "O": ["O", "O:", "o", "o:"],
    "I": ["I", "i", "e"],
    "i": ["i", "i:", "I"],
    "U": ["U", "u", "o"],
    "u": ["u", "u:", "U"],
    "@": ["@", "6", "e", "E", "a"],
    "E": ["E", "e", "E:"],
    "D": ["D", "d", "z", "v"],
    "T": ["T", "s", "f", "t"],
    "w": ["w", "u", "U", "v"],
    "h": ["h", "x", ""],
    "N": ["N", "n"],
    "j": ["j", "i"],
    "tS": ["tS", "t S", "ts", "t s", "S"],
    "dZ": ["dZ", "d Z", "d z", "tS", "Z", "j"],
    "Z": ["Z", "z", "S", "s"],
    "z": ["z", "s"],
    "S": ["S", "s"],
    "v": ["v", "f", "b"],
    "l": ["l", "L"],
    "_": ["_"],
}
CONSONANTS = ["p", "b", "t", "d", "k", "g", "f", "s", "m", "n"]  # candidates are themselves, or dropped


def _renders(voice: str, phones: list[str]) -> bool:
    """Whether ``voice`` renders the phones between two silences without a fatal error (no missing diphone)."""
    pho = "_ 50\n" + "".join(f"{p} 80\n" for p in phones) + "_ 50\n"
    with tempfile.TemporaryDirectory(prefix="mbx-") as td:
        src = os.path.join(td, "in.pho")
        with open(src, "w") as fh:
            fh.write(pho)
        r = subprocess.run(
            ["mbrola", database(voice), src, os.path.join(td, "out.wav")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
    return r.returncode == 0


def database(voice: str) -> str:
    return os.path.join(MBROLA_DIR, voice, voice)


def databases() -> list[str]:
    """Every MBROLA voice the split reads: the target voices and the English ones espeak-ng's phones come from."""
    return sorted({*VOICES, *SOURCE.values()})


@cache
def phone_map(voice: str) -> dict[str, list[str]]:
    """English phone -> the voice's phones (possibly none), the first candidate the voice renders."""
    has: dict[str, bool] = {}

    def ok(phone: str) -> bool:
        # alone, or between two of the commonest phones: a language may never end a word on it (German /d/)
        if phone not in has:
            has[phone] = any(_renders(voice, ctx) for ctx in ([phone], ["a", phone, "a"], ["t", phone, "t"]))
        return has[phone]

    table: dict[str, list[str]] = {}
    for phone, cands in {**CANDIDATES, **{c: [c] for c in CONSONANTS}}.items():
        for cand in cands:
            parts = cand.split()
            if all(ok(p) for p in parts):
                table[phone] = parts
                break
        else:
            table[phone] = []
    return table


def english_pho(text: str, female: bool, speed: int, pitch: int) -> list[list[str]]:
    """espeak-ng's MBROLA phones for ``text`` (mb-us1, a female voice, or mb-us2): lines split into fields."""
    out = subprocess.run(
        ["espeak-ng", "-v", f"mb-{SOURCE[female]}", "-q", "--pho", "-s", str(speed), "-p", str(pitch), text],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [line.split() for line in out.splitlines() if line.strip() and not line.startswith(";")]


def convert(lines: list[list[str]], table: dict[str, list[str]]) -> str:
    """Rewrite English MBROLA phone lines with the target voice's phones.

    A phone that becomes two splits its duration 40/60 and keeps its pitch targets on both halves; a dropped
    phone gives its duration to nothing (the accent drops it)."""
    out = []
    for fields in lines:
        phone, dur, targets = fields[0], int(fields[1]), fields[2:]
        parts = table.get(phone, [phone])
        if len(parts) == 1:
            out.append(" ".join([parts[0], str(dur), *targets]))
        elif len(parts) == 2:
            first = max(1, round(dur * 0.4))
            out.append(" ".join([parts[0], str(first), *targets]))
            out.append(" ".join([parts[1], str(max(1, dur - first)), *targets]))
    return "\n".join(out) + "\n"


def synthesize(text: str, voice: str, speed: int, pitch: int, wav: str) -> None:
    """English ``text`` read by MBROLA ``voice`` into ``wav`` (the voice's own sample rate)."""
    lines = english_pho(text, VOICES[voice], speed, pitch)
    pho = convert(lines, phone_map(voice))
    src = wav + ".pho"
    with open(src, "w") as fh:
        fh.write(pho)
    subprocess.run(
        ["mbrola", "-e", database(voice), src, wav],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
    )
