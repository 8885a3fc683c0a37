"""Word n-gram language model in ARPA format (as written by KenLM's lmplz, SRILM or others) for CTC beam search.

The model is read into dictionaries and queried with the usual back-off rule; it is meant for small models
(a few million n-grams). Words are scored after :func:`lm_words` normalisation (lower case, letters, digits and
inner apostrophes), so the language model never sees case or punctuation, which stay the acoustic model's.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import hashlib
import math
import os
import pickle
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from samba_cli.atomic import write_atomically
from samba_cli.errors import SambaError

LM_FILE = "lm.arpa.gz"  # a model folder's optional language model, used by CTC decoding
LEXICON_FILE = "lexicon.txt.gz"  # a model folder's optional word list, used with its language model
LN10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def lm_words(text: str) -> list[str]:
    """The language-model words of ``text``: "Don't stop, Charles!" -> ["don't", "stop", "charles"]."""
    return _WORD.findall(text.lower())


def split_finished(text: str) -> tuple[str, str]:
    """``text`` cut after its last finished word: "it,vene" -> ("it,", "vene"), "don'" -> ("", "don'").

    A word is finished once a character that cannot continue it follows: anything but a letter, a digit or an
    apostrophe, or an apostrophe followed by such a character ("don'" may still become "don't")."""
    cut = 0
    for match in _WORD.finditer(text):
        end = match.end()
        rest = text[end : end + 2]
        if rest and not (rest[0] == "'" and (len(rest) == 1 or _WORD.match(rest[1]))):
            cut = end + 1
    return text[:cut], text[cut:]


def _open_text(path: Path):
    """A text stream of a plain or gzip-compressed UTF-8 file, told apart by the gzip magic number."""
    with path.open("rb") as head:
        compressed = head.read(2) == b"\x1f\x8b"
    return (gzip.open if compressed else open)(path, "rt", encoding="utf-8")


class NgramLM:
    """A back-off n-gram model. Log-probabilities are natural logs; a state is the tuple of context words."""

    def __init__(self, ngrams: dict[tuple[str, ...], tuple[float, float]], order: int) -> None:
        self.order = order
        self._ngrams = ngrams  # n-gram -> (log10 probability, log10 back-off weight)
        self.vocab = frozenset(g[0] for g in ngrams if len(g) == 1) - {BOS, EOS, UNK}
        self._prefixes = frozenset(w[:i] for w in self.vocab for i in range(1, len(w) + 1))
        unk = ngrams.get((UNK,))
        self._unk = unk[0] if unk is not None else -100.0

    @classmethod
    def from_arpa(cls, path: str | os.PathLike) -> NgramLM:
        """Read an ARPA file, plain or gzip-compressed; a malformed file raises a one-line SambaError."""
        path = Path(path)
        try:
            with _open_text(path) as stream:
                ngrams, order = _parse_arpa(stream)
        except FileNotFoundError:
            raise SambaError(f"{path}: language model not found") from None
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise SambaError(f"{path}: cannot read the language model: {exc}") from None
        except ValueError as exc:
            raise SambaError(f"{path}: not an ARPA language model: {exc}") from None
        return cls(ngrams, order)

    @property
    def ngrams(self) -> dict[tuple[str, ...], tuple[float, float]]:
        """Every n-gram of the file -> (log10 probability, log10 back-off weight); read-only by convention."""
        return self._ngrams

    def start(self) -> tuple[str, ...]:
        """The state at the beginning of a sentence."""
        return (BOS,)

    def score(self, state: tuple[str, ...], word: str) -> tuple[float, tuple[str, ...]]:
        """ln P(word | state) and the state after it; an unknown word is scored as <unk>."""
        if word not in self.vocab and word != EOS:
            word = UNK
        backoff = 0.0
        context = state[-(self.order - 1) :] if self.order > 1 else ()
        for start in range(len(context) + 1):
            ctx = context[start:]
            entry = self._ngrams.get((*ctx, word))
            if entry is not None:
                logp = entry[0]
                break
            if ctx:
                ctx_entry = self._ngrams.get(ctx)
                if ctx_entry is not None:
                    backoff += ctx_entry[1]
        else:
            logp = self._unk
        new_state = (*context, word)[-(self.order - 1) :] if self.order > 1 else ()
        return (logp + backoff) * LN10, new_state

    def is_prefix(self, partial: str) -> bool:
        """True when some word of the vocabulary starts with ``partial`` (an already normalised string)."""
        return partial in self._prefixes


class Lexicon:
    """A word list: spellings that CTC beam search accepts beyond the language model's vocabulary.

    A file holds one word per line (plain or gzip, UTF-8); lines starting with ``#`` are comments (a licence
    notice travels inside the file). Words go through :func:`lm_words`; a line that is not exactly one word is
    skipped."""

    def __init__(self, words: Iterable[str]) -> None:
        kept = set()
        for line in words:
            word = line.strip()
            if word.isalpha() and word.islower() and word.isascii():  # already normalised: most lines
                kept.add(word)
                continue
            found = lm_words(line)
            if len(found) == 1:
                kept.add(found[0])
        self._sorted = sorted(kept)
        self._words = frozenset(self._sorted)

    def __len__(self) -> int:
        return len(self._sorted)

    def __iter__(self):
        """The normalised words, sorted."""
        return iter(self._sorted)

    def __contains__(self, word: str) -> bool:
        return word in self._words

    def is_prefix(self, partial: str) -> bool:
        """True when some word of the list starts with ``partial`` (an already normalised string)."""
        i = bisect.bisect_left(self._sorted, partial)
        return i < len(self._sorted) and self._sorted[i].startswith(partial)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Lexicon:
        """Read a word list; a missing or unreadable file raises a one-line SambaError."""
        path = Path(path)
        try:
            with _open_text(path) as stream:
                lexicon = cls(line for line in stream if not line.startswith("#"))
        except FileNotFoundError:
            raise SambaError(f"{path}: lexicon not found") from None
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise SambaError(f"{path}: cannot read the lexicon: {exc}") from None
        if not lexicon:
            raise SambaError(f"{path}: the lexicon holds no word")
        return lexicon


@lru_cache(maxsize=4)
def load_lexicon(path: str) -> Lexicon:
    """Lexicon.from_file, cached by path in this process and on disk (see :func:`parsed_cache`)."""
    return parsed_cache(path, "lexicon", Lexicon.from_file)


def _parse_arpa(stream) -> tuple[dict[tuple[str, ...], tuple[float, float]], int]:
    counts: dict[int, int] = {}
    ngrams: dict[tuple[str, ...], tuple[float, float]] = {}
    section = None  # None before \data\, 0 in \data\, n in \n-grams:
    seen_end = False
    for number, raw in enumerate(stream, 1):
        line = raw.strip()
        if not line:
            continue
        if line == "\\data\\":
            section = 0
            continue
        if section is None:
            continue  # header text before \data\ is allowed
        if line == "\\end\\":
            seen_end = True
            break
        match = re.fullmatch(r"\\(\d+)-grams:", line) if line[0] == "\\" else None
        if match:
            section = int(match.group(1))
            if section not in counts:
                raise ValueError(f"line {number}: section {line} not announced in \\data\\")
            continue
        if section == 0:
            match = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", line)
            if not match:
                raise ValueError(f"line {number}: expected 'ngram N=COUNT', got {line[:40]!r}")
            counts[int(match.group(1))] = int(match.group(2))
            continue
        fields = line.split()
        if len(fields) not in (section + 1, section + 2):
            raise ValueError(f"line {number}: expected a {section}-gram entry, got {line[:40]!r}")
        try:
            logp = float(fields[0])
            backoff = float(fields[section + 1]) if len(fields) == section + 2 else 0.0
        except ValueError:
            raise ValueError(f"line {number}: not a number in {line[:40]!r}") from None
        ngrams[tuple(fields[1 : section + 1])] = (logp, backoff)
    if section is None:
        raise ValueError("no \\data\\ section")
    if not seen_end:
        raise ValueError("no \\end\\ line (truncated file?)")
    if not counts:
        raise ValueError("no n-gram counts in \\data\\")
    return ngrams, max(counts)


@lru_cache(maxsize=4)
def load_lm(path: str) -> NgramLM:
    """NgramLM.from_arpa, cached by path: transcription and evaluation load a model once per process, and the
    parsed model is kept on disk for the next process (see :func:`parsed_cache`)."""
    return parsed_cache(path, "lm", NgramLM.from_arpa)


T = TypeVar("T")
CACHE_FORMAT = 1  # bump when NgramLM or Lexicon change what they hold: older cached copies are then ignored


def cache_dir() -> Path:
    """Where parsed language models and lexicons are kept: $SAMBA_CACHE_DIR, else $XDG_CACHE_HOME/samba-asr, else
    ~/.cache/samba-asr."""
    explicit = os.environ.get("SAMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "samba-asr"


def parsed_cache(path: str, kind: str, parse: Callable[[str], T]) -> T:
    """``parse(path)``, or the copy of its result pickled by an earlier process for the same file (same absolute
    path, size and modification time). Reading a pickle takes a fifth of the time of parsing the text (about
    0.3 s less for the bundled model's language model and lexicon). A missing, unreadable or stale copy is
    parsed again; a cache folder that cannot be written is skipped. Only this process's own user's cache folder
    is read."""
    source = Path(path)
    try:
        stat = source.stat()
    except OSError:
        return parse(path)  # the parser reports the missing file
    key = f"{CACHE_FORMAT}|{kind}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cached = cache_dir() / "parsed" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.pickle"
    try:
        with cached.open("rb") as stream:
            return pickle.load(stream)
    except Exception:  # noqa: BLE001 - absent, truncated or from another version: parse the file again
        pass
    result = parse(path)
    # a cache that cannot be written costs the next process a parse, nothing more
    with contextlib.suppress(Exception):
        write_atomically(
            cached, lambda stream: pickle.dump(result, stream, protocol=pickle.HIGHEST_PROTOCOL), binary=True
        )
    return result
