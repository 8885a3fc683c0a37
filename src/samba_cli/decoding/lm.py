"""Word n-gram language model in ARPA format (as written by KenLM's lmplz, SRILM or others) for CTC beam search.

The model is held as arrays of word numbers and queried with the usual back-off rule; it is meant for models of
up to a few million n-grams. Words are scored after :func:`lm_words` normalisation (lower case, letters, digits
and inner apostrophes), so the language model never sees case or punctuation, which stay the acoustic model's.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import gzip
import hashlib
import math
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

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
    """A back-off n-gram model. Log-probabilities are natural logs; a state is the tuple of context words.

    The n-grams are held as arrays: each n-gram is one integer key (its word numbers as digits), and a lookup is
    a binary search of the sorted keys. A model of half a million n-grams loads from its cached arrays in a
    fraction of a second and a third of the memory that a dictionary of string tuples took.
    (A key past 63 bits, from a large vocabulary and a high order, is kept in a dictionary instead.)"""

    def __init__(self, ngrams: dict[tuple[str, ...], tuple[float, float]], order: int) -> None:
        self._load(_ngram_arrays(ngrams, order))

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the tables of :meth:`to_arrays` (already checked) and build the lookup."""
        self._arrays = arrays
        self._words = _array_text(arrays["words"])
        self.order = int(arrays["order"][0])
        self._number = {w: i for i, w in enumerate(self._words)}
        # a key's digits are its words' numbers + 1, in base (words + 1): no two n-grams of any order share one
        self._base = len(self._words) + 1
        orders = range(1, self.order + 1)
        table = np.concatenate([arrays[f"values{n}"] for n in orders])
        if self._base**self.order < 2**63:  # keys fit in int64: one sorted array, searched
            keys = np.concatenate([_keys(arrays[f"ids{n}"], self._base) for n in orders])
            rows = np.argsort(keys, kind="stable")
            keys = keys[rows]
            last = np.append(keys[1:] != keys[:-1], True)  # a repeated n-gram: its last line counts
            self._keys, self._row = keys[last], None
            table = table[rows[last]]
        else:  # a large vocabulary and a high order: Python integers in a dictionary
            keys = [key for n in orders for key in _wide_keys(arrays[f"ids{n}"], self._base)]
            self._keys, self._row = None, dict(zip(keys, range(len(keys)), strict=True))
        self._logp, self._backoff = table[:, 0], table[:, 1]
        unigrams = [self._words[i] for i in arrays["ids1"][:, 0].tolist()]
        self.vocab = frozenset(unigrams) - {BOS, EOS, UNK}
        self._sorted_vocab = sorted(self.vocab)
        unk = self._find([self._number.get(UNK, -1) + 1])
        self._unk = float(self._logp[unk]) if unk is not None else -100.0
        self._ngrams: dict[tuple[str, ...], tuple[float, float]] | None = None

    @classmethod
    def from_arpa(cls, path: str | os.PathLike) -> NgramLM:
        """Read an ARPA file, plain or gzip-compressed; a malformed file raises a one-line SambaError."""
        path = Path(path)
        try:
            with _open_text(path) as stream:
                arrays = _parse_arpa(stream)
        except FileNotFoundError:
            raise SambaError(f"{path}: language model not found") from None
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise SambaError(f"{path}: cannot read the language model: {exc}") from None
        except ValueError as exc:
            raise SambaError(f"{path}: not an ARPA language model: {exc}") from None
        lm = cls.__new__(cls)
        lm._load(arrays)
        return lm

    @property
    def ngrams(self) -> dict[tuple[str, ...], tuple[float, float]]:
        """Every n-gram of the file -> (log10 probability, log10 back-off weight), lowest order first, in file
        order; built on first use (recipes read it, decoding does not); read-only by convention."""
        if self._ngrams is None:
            words, ngrams = self._words, {}
            for n in range(1, self.order + 1):
                grams = zip(
                    *[[words[i] for i in column] for column in self._arrays[f"ids{n}"].T.tolist()],
                    strict=True,
                )
                ngrams.update(zip(grams, map(tuple, self._arrays[f"values{n}"].tolist()), strict=True))
            self._ngrams = ngrams
        return self._ngrams

    def start(self) -> tuple[str, ...]:
        """The state at the beginning of a sentence."""
        return (BOS,)

    def score(self, state: tuple[str, ...], word: str) -> tuple[float, tuple[str, ...]]:
        """ln P(word | state) and the state after it; an unknown word is scored as <unk>."""
        if word not in self.vocab and word != EOS:
            word = UNK
        context = state[-(self.order - 1) :] if self.order > 1 else ()
        digits = [self._number.get(w, -1) + 1 for w in (*context, word)]  # 0: a word in no n-gram
        backoff = 0.0
        for start in range(len(context) + 1):
            found = self._find(digits[start:])
            if found is not None:
                logp = float(self._logp[found])
                break
            if start < len(context):
                ctx = self._find(digits[start:-1])
                if ctx is not None:
                    backoff += float(self._backoff[ctx])
        else:
            logp = self._unk
        new_state = (*context, word)[-(self.order - 1) :] if self.order > 1 else ()
        return (logp + backoff) * LN10, new_state

    def _find(self, digits: list[int]) -> int | None:
        """The row of the n-gram whose words have the numbers ``digits`` (each + 1), None when it is not in the
        model (0 stands for a word the model lacks)."""
        key = 0
        for digit in digits:
            if not digit:
                return None
            key = key * self._base + digit
        if self._row is not None:
            return self._row.get(key)
        i = int(self._keys.searchsorted(key))
        return i if i < len(self._keys) and self._keys[i] == key else None

    def is_prefix(self, partial: str) -> bool:
        """True when some word of the vocabulary starts with ``partial`` (an already normalised string)."""
        i = bisect.bisect_left(self._sorted_vocab, partial)
        return i < len(self._sorted_vocab) and self._sorted_vocab[i].startswith(partial)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The model as plain arrays (no Python objects), for :func:`parsed_cache`: the words as one UTF-8 text,
        and per order n the n-grams as word numbers (count, n) with their (log10 p, log10 back-off) (count, 2)."""
        return dict(self._arrays)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> NgramLM:
        """The inverse of :meth:`to_arrays`; arrays of the wrong kind or shape raise ValueError."""
        words = _array_text(arrays["words"])
        order = arrays["order"]
        if order.dtype != np.int64 or order.shape != (1,) or order[0] < 1:
            raise ValueError("bad order array")
        for n in range(1, int(order[0]) + 1):
            ids, values = arrays[f"ids{n}"], arrays[f"values{n}"]
            shaped = ids.dtype == np.int32 and ids.ndim == 2 and ids.shape[1] == n
            shaped = shaped and values.dtype == np.float64 and values.shape == (len(ids), 2)
            if not shaped or (len(ids) and (ids.min() < 0 or ids.max() >= len(words))):
                raise ValueError(f"bad {n}-gram arrays")
        lm = cls.__new__(cls)
        lm._load({name: arrays[name] for name in ("words", "order", *_table_names(int(order[0])))})
        return lm


def _table_names(order: int) -> list[str]:
    return [f"{kind}{n}" for n in range(1, order + 1) for kind in ("ids", "values")]


def _ngram_arrays(ngrams: dict[tuple[str, ...], tuple[float, float]], order: int) -> dict[str, np.ndarray]:
    """The tables of :meth:`NgramLM.to_arrays` for a dictionary of n-grams (each order in dictionary order)."""
    words = sorted({w for gram in ngrams for w in gram})
    number = {w: i for i, w in enumerate(words)}
    arrays = {"words": _text_array(words), "order": np.array([order], dtype=np.int64)}
    for n in range(1, order + 1):
        grams = [(g, v) for g, v in ngrams.items() if len(g) == n]
        arrays[f"ids{n}"] = np.array([[number[w] for w in g] for g, _ in grams], dtype=np.int32).reshape(
            -1, n
        )
        arrays[f"values{n}"] = np.array([v for _, v in grams], dtype=np.float64).reshape(-1, 2)
    return arrays


def _keys(ids: np.ndarray, base: int) -> np.ndarray:
    """One int64 per row of word numbers: the digits ``number + 1`` in ``base`` (the caller checked they fit)."""
    keys = np.zeros(len(ids), dtype=np.int64)
    for column in ids.T:
        keys = keys * base + (column.astype(np.int64) + 1)
    return keys


def _wide_keys(ids: np.ndarray, base: int) -> list[int]:
    """:func:`_keys` in Python integers, for keys past 63 bits."""
    keys = [0] * len(ids)
    for column in ids.T.tolist():
        keys = [key * base + number + 1 for key, number in zip(keys, column, strict=True)]
    return keys


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

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The word list as one UTF-8 text array, for :func:`parsed_cache`."""
        return {"words": _text_array(self._sorted)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Lexicon:
        """The inverse of :meth:`to_arrays` (the words were normalised when they were saved: not done again)."""
        words = _array_text(arrays["words"])
        if any(a >= b for a, b in zip(words, words[1:], strict=False)):
            raise ValueError("lexicon words not sorted")
        lexicon = cls(())
        lexicon._sorted, lexicon._words = words, frozenset(words)
        return lexicon

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
    return parsed_cache(path, Lexicon.from_file, Lexicon)


def _parse_arpa(stream) -> dict[str, np.ndarray]:
    """The tables of :meth:`NgramLM.to_arrays` read from an ARPA text: words numbered as they first appear,
    n-grams stored as they are read (no dictionary of string tuples, so a large file parses in little memory)."""
    counts: dict[int, int] = {}
    number: dict[str, int] = {}
    ids: dict[int, array.array] = {}  # order -> word numbers, n per n-gram
    values: dict[int, array.array] = {}  # order -> (log10 p, log10 back-off) per n-gram
    section = None  # None before \data\, 0 in \data\, n in \n-grams:
    seen_end = False
    for line_number, raw in enumerate(stream, 1):
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
                raise ValueError(f"line {line_number}: section {line} not announced in \\data\\")
            ids.setdefault(section, array.array("i"))
            values.setdefault(section, array.array("d"))
            continue
        if section == 0:
            match = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", line)
            if not match:
                raise ValueError(f"line {line_number}: expected 'ngram N=COUNT', got {line[:40]!r}")
            counts[int(match.group(1))] = int(match.group(2))
            continue
        fields = line.split()
        if len(fields) not in (section + 1, section + 2):
            raise ValueError(f"line {line_number}: expected a {section}-gram entry, got {line[:40]!r}")
        try:
            logp = float(fields[0])
            backoff = float(fields[section + 1]) if len(fields) == section + 2 else 0.0
        except ValueError:
            raise ValueError(f"line {line_number}: not a number in {line[:40]!r}") from None
        for word in fields[1 : section + 1]:
            found = number.get(word)
            if found is None:
                found = number[word] = len(number)
            ids[section].append(found)
        values[section].extend((logp, backoff))
    if section is None:
        raise ValueError("no \\data\\ section")
    if not seen_end:
        raise ValueError("no \\end\\ line (truncated file?)")
    if not counts:
        raise ValueError("no n-gram counts in \\data\\")
    order = max(counts)
    arrays = {"words": _text_array(list(number)), "order": np.array([order], dtype=np.int64)}
    for n in range(1, order + 1):
        arrays[f"ids{n}"] = np.array(ids.get(n, ()), dtype=np.int32).reshape(-1, n)
        arrays[f"values{n}"] = np.array(values.get(n, ()), dtype=np.float64).reshape(-1, 2)
    return arrays


@lru_cache(maxsize=4)
def load_lm(path: str) -> NgramLM:
    """NgramLM.from_arpa, cached by path: transcription and evaluation load a model once per process, and the
    parsed model is kept on disk for the next process (see :func:`parsed_cache`)."""
    return parsed_cache(path, NgramLM.from_arpa, NgramLM)


def _text_array(words: list[str]) -> np.ndarray:
    return np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)


def _array_text(array: np.ndarray) -> list[str]:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError("bad word array")
    text = array.tobytes().decode("utf-8")
    return text.split("\n") if text else []


class Parsed(Protocol):
    """What :func:`parsed_cache` keeps: a parsed file that converts to and from plain arrays."""

    def to_arrays(self) -> dict[str, np.ndarray]: ...

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Parsed: ...


T = TypeVar("T", bound=Parsed)
CACHE_FORMAT = 2  # bump when NgramLM or Lexicon change what they hold: older cached copies are then ignored


def cache_dir() -> Path:
    """Where parsed language models and lexicons are kept: $SAMBA_CACHE_DIR, else $XDG_CACHE_HOME/samba-asr, else
    ~/.cache/samba-asr."""
    explicit = os.environ.get("SAMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "samba-asr"


def _own_file(path: Path) -> bool:
    """True when ``path`` is a regular file of this user in a folder of this user that nobody else may write."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder, info = path.parent.lstat(), path.lstat()
    if uid is not None and (folder.st_uid != uid or info.st_uid != uid):
        return False
    return not folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and stat.S_ISREG(info.st_mode)


def _read_arrays(cached: Path) -> dict[str, np.ndarray]:
    with np.load(cached, allow_pickle=False) as archive:  # plain arrays only: a cache file never runs code
        return {name: archive[name] for name in archive.files}


def parsed_cache(path: str, parse: Callable[[str], T], parsed: type[T]) -> T:
    """``parse(path)``, an instance of ``parsed``, or the copy an earlier process saved for the same file
    (same absolute path, size and modification time). Reading the copy is several times faster than parsing
    the text. The copy holds plain numpy arrays (``.npz`` read with ``allow_pickle=False``), never pickles, and
    is only read when this user owns it and its folder and nobody else may write them: a shared or planted
    cache file is ignored, never executed. The folder is created private (0700). A missing, unreadable, stale
    or malformed copy is parsed again; a cache folder that cannot be written is skipped."""
    kind = parsed.__name__.lower()
    source = Path(path)
    try:
        info = source.stat()
    except OSError:
        return parse(path)  # the parser reports the missing file
    key = f"{CACHE_FORMAT}|{kind}|{source.resolve()}|{info.st_size}|{info.st_mtime_ns}"
    cached = cache_dir() / "parsed" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    try:
        if _own_file(cached):
            return parsed.from_arrays(_read_arrays(cached))
    except (OSError, ValueError, KeyError, IndexError, UnicodeDecodeError, zipfile.BadZipFile, EOFError):
        pass  # absent, truncated, foreign or from another version: parse the file again
    result = parse(path)
    # a cache that cannot be written costs the next process a parse, nothing more
    with contextlib.suppress(OSError, ValueError):
        cached.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(cached, lambda stream: np.savez(stream, **result.to_arrays()), binary=True)
    return result
