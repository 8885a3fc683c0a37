"""A reader for the speech and text of *Flight of the Amazon Queen* (the CD "talkie" release, queen.1c).

Everything here is a fact about the game's file formats, read from the file itself:

- ``queen.1c`` starts with a table of contents: ``QTBL``, a 6-byte version (``CEM10\\0``), 2 padding bytes, one
  compression byte (1 = MP3), a big-endian u16 entry count and 21-byte entries (12-byte name, bundle byte,
  u32 BE offset, u32 BE size).
- ``*.SB`` entries are the voice clips, one bare MP3 stream each (11,025 Hz mono).
- The text of each clip comes from three places, each mapped to clip names by a fixed rule:
  conversations (``*.DOG``), cut scenes (``*.CUT``) and Joe's remarks (``QUEEN.JAS`` + ``QUEEN2.JAS``).
- A spoken line is split into parts by ``*XX`` markers (two characters after the star); each non-empty part is
  one clip, numbered from 1 in the order of the parts. ``*GD``/``*GM`` markers do not start a new part.

Nothing of the game is stored in this repository; the recipe downloads the Debian package.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

AMOS_HEADER = 20  # every .DOG/.CUT/.JAS entry starts with a 20-byte AMOS "AmBk" bank header
TOC_MAGIC = b"QTBL"
TOC_ENTRY = 21  # 12-byte name, bundle byte, u32 offset, u32 size
DOG_TREE_ROW = 96  # one level of the dialogue tree: 6 rows of 4 x int32
DOG_TREE_START = 32  # bytes of conversation header before the dialogue tree
JOE_RESPONSES = 40  # Joe's generic responses come first in QUEEN2.JAS's last block; JOE0001-JOE0040
JAS_VERBS = 12
JOE = "JOE"


class QueenFormatError(ValueError):
    """The data file is not the layout this reader knows (a truncated or different file)."""


@dataclass(frozen=True)
class Entry:
    name: str  # e.g. "020006J1.SB"
    offset: int  # byte offset in queen.1c
    size: int  # bytes


@dataclass(frozen=True)
class Line:
    clip: str  # voice clip name without ".SB", e.g. "020006J1"
    text: str  # the game's text of this clip (markers removed, not yet normalised)
    speaker: str  # "JOE", the conversation partner's tag (e.g. "APE"), or "CUT:<scene>" for cut scenes
    source: str  # the game file the text came from, e.g. "APE.DOG"


def read_toc(data: bytes) -> dict[str, Entry]:
    """The table of contents of queen.1c: entry name -> Entry."""
    if len(data) < 15 or data[:4] != TOC_MAGIC:
        raise QueenFormatError("not a rebuilt Queen data file (no QTBL table of contents)")
    if data[12] != 1:
        raise QueenFormatError(f"speech compression {data[12]} is not MP3 (1)")
    (count,) = struct.unpack(">H", data[13:15])
    end = 15 + count * TOC_ENTRY
    if end > len(data):
        raise QueenFormatError(f"table of contents of {count} entries runs past the end of the file")
    entries: dict[str, Entry] = {}
    for pos in range(15, end, TOC_ENTRY):
        name = data[pos : pos + 12].rstrip(b"\0").decode("latin-1")
        offset, size = struct.unpack(">II", data[pos + 13 : pos + 21])
        if offset + size > len(data):
            raise QueenFormatError(f"entry {name} runs past the end of the file")
        entries[name] = Entry(name, offset, size)
    return entries


def entry_bytes(data: bytes, entry: Entry) -> bytes:
    return data[entry.offset : entry.offset + entry.size]


def split_parts(sentence: str) -> list[str]:
    """A line's parts, split at ``*XX`` markers (``*GD``/``*GM`` removed without a split); empty parts kept."""
    sentence = re.sub(r"\*G[DM]", "", sentence)
    return re.split(r"\*[0-9A-Z]{2}", sentence)


def _voiced(clip_prefix: str, sentence: str, speaker: str, source: str) -> list[Line]:
    return [
        Line(f"{clip_prefix}{number:X}", part.strip(), speaker, source)  # part 10 is "A"
        for number, part in enumerate(split_parts(sentence), start=1)
        if part.strip()
    ]


def _pascal(blob: bytes, pos: int, align: int) -> tuple[str, int]:
    """A length-prefixed string at ``pos`` and the position after it, rounded up to ``align`` (an empty string
    takes one byte and is not padded)."""
    if pos >= len(blob):
        raise QueenFormatError("a string runs past the end of its entry")
    length = blob[pos]
    end = pos + 1 + length
    if end > len(blob):
        raise QueenFormatError("a string runs past the end of its entry")
    text = blob[pos + 1 : end].decode("latin-1")
    if length and end % align:
        end += align - end % align
    return text, end


def _i16(blob: bytes, pos: int) -> int:
    return struct.unpack(">h", blob[pos : pos + 2])[0]


def _u16(blob: bytes, pos: int) -> int:
    return struct.unpack(">H", blob[pos : pos + 2])[0]


def dog_partner(name: str) -> str:
    """The conversation partner's tag from a .DOG name: "BOB3.DOG" -> "BOB"."""
    return re.sub(r"\d+$", "", name.rsplit(".", 1)[0]).upper()


def read_dog(name: str, raw: bytes) -> list[Line]:
    """The voiced lines of one conversation file: Joe's and the partner's."""
    blob = raw[AMOS_HEADER:]
    if len(blob) < DOG_TREE_START:
        raise QueenFormatError(f"{name}: conversation header is truncated")
    levels = abs(_i16(blob, 0))
    talk_key, joe_count, partner_count = _i16(blob, 4), _i16(blob, 6), _i16(blob, 8)
    partner_at, second_at = _u16(blob, 22), _u16(blob, 26)
    joe_at = DOG_TREE_START + levels * DOG_TREE_ROW
    partner = dog_partner(name)
    key = f"{talk_key:2d}".replace(" ", "0")
    lines: list[Line] = []

    def table(pos: int, count: int) -> list[tuple[int, str]]:
        rows = []
        for _ in range(count):
            line_id = _i16(blob, pos + 2)
            text, pos = _pascal(blob, pos + 4, 4)
            rows.append((line_id, text))
        return rows

    for index, (line_id, text) in enumerate(table(joe_at, joe_count)):
        # the first row is Joe's opening line, voiced as SSSS
        ident = "SSSS" if index == 0 else f"{line_id:4x}".replace(" ", "0").upper()
        lines += _voiced(f"{key}{ident}J", text, JOE, name)
    for line_id, text in table(partner_at, partner_count):
        ident = f"{line_id:4x}".replace(" ", "0").upper()
        lines += _voiced(f"{key}{ident}P", text, partner, name)
    # after the tables, the repeat visit (XXXX): the partner's greeting, then Joe's line
    greeting, pos = _pascal(blob, second_at, 1)
    repeat, _ = _pascal(blob, pos, 1)
    lines += _voiced(f"{key}XXXXP", greeting, partner, name)
    lines += _voiced(f"{key}XXXXJ", repeat, JOE, name)
    return lines


def read_cut(name: str, raw: bytes) -> list[Line]:
    """The voiced lines of one cut scene: one string per scene object, clip = scene(5) + object(2) + part."""
    blob = raw[AMOS_HEADER:]
    if len(blob) < 12:
        raise QueenFormatError(f"{name}: cut-scene header is truncated")
    count = abs(_i16(blob, 2))
    pos = _u16(blob, 8)
    scene = name.rsplit(".", 1)[0].upper()
    prefix = scene[:5].ljust(5, "_")
    _entry, pos = _pascal(blob, pos, 2)  # the entry string (Joe's facing), not spoken
    lines: list[Line] = []
    for index in range(1, count + 1):
        text, pos = _pascal(blob, pos, 2)
        lines += _voiced(f"{prefix}{index:02d}", text, f"CUT:{scene}", name)
    return lines


def cut_talk_file(name: str, raw: bytes) -> str:
    """The conversation file a cut scene belongs to ("" when none): its partner speaks in the scene."""
    blob = raw[AMOS_HEADER:]
    pos = _u16(blob, 10)
    banks = _u16(blob, pos)
    pos += 2
    for _ in range(banks):
        _bank, pos = _pascal(blob, pos, 2)
    talk, _ = _pascal(blob, pos, 2)
    return talk.upper()


def read_jas(queen_jas: bytes, queen2_jas: bytes) -> list[Line]:
    """Joe's remarks: object descriptions (JOE0041...) and his generic responses (JOE0001-JOE0040)."""
    blob = queen_jas[AMOS_HEADER:]
    if len(blob) < 8:
        raise QueenFormatError("QUEEN.JAS: header is truncated")
    rooms, names, descriptions = _u16(blob, 0), _u16(blob, 2), _u16(blob, 6)
    text = queen2_jas.decode("latin-1").split("\r\n")
    need = descriptions + names + rooms + JAS_VERBS + JOE_RESPONSES
    if len(text) < need:
        raise QueenFormatError(f"QUEEN2.JAS has {len(text)} lines, QUEEN.JAS's counts need {need}")
    lines: list[Line] = []
    for number, line in enumerate(text[:descriptions], start=1):
        lines += _voiced(f"JOE{JOE_RESPONSES + number:04d}", line, JOE, "QUEEN2.JAS")
    start = descriptions + names + rooms + JAS_VERBS
    for number, line in enumerate(text[start : start + JOE_RESPONSES], start=1):
        lines += _voiced(f"JOE{number:04d}", line, JOE, "QUEEN2.JAS")
    return lines


def read_lines(data: bytes, toc: dict[str, Entry]) -> list[Line]:
    """Every line of text that has a voice clip in ``toc``, with its speaker; first text wins for a clip."""
    lines: list[Line] = []
    for name in sorted(toc):
        if name.endswith(".DOG"):
            lines += read_dog(name, entry_bytes(data, toc[name]))
        elif name.endswith(".CUT"):
            lines += read_cut(name, entry_bytes(data, toc[name]))
    if "QUEEN.JAS" in toc and "QUEEN2.JAS" in toc:
        lines += read_jas(entry_bytes(data, toc["QUEEN.JAS"]), entry_bytes(data, toc["QUEEN2.JAS"]))
    seen: set[str] = set()
    voiced = []
    for line in lines:
        if line.clip in seen or f"{line.clip}.SB" not in toc:
            continue
        seen.add(line.clip)
        voiced.append(line)
    return voiced


# Text normalisation: the synthetic-en recipe's rules (ASCII, case and , . ; : ! ? ' - kept, quotes and brackets
# dropped, all-caps emphasis lower-cased), without its sentence-length filter: a game line may be one word or
# several sentences.
ALLOWED = re.compile(r"^[A-Za-z ,.;:!?'-]+$")


def normalise(text: str) -> str | None:
    """The transcript of one clip in the project's text conventions, or None when it is not speakable text."""
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = s.replace("--", ", ").replace("`", "'").replace('"', " ").replace("_", " ")
    s = re.sub(r"[()\[\]{}*]", " ", s)
    s = re.sub(r"\.\.+", "...", s)
    s = re.sub(r"(^|[\s,.;:!?-])'+", r"\1", s)
    s = re.sub(r"'+(?=$|[\s,.;:!?-])", "", s)
    s = " ".join(s.split())
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r"\.\.\.(?=\s*\S)", ",", s)  # a pause inside the line
    s = re.sub(r"([,;:])[,;:]+", r"\1", s)
    s = re.sub(r"[,;:]+([.!?])", r"\1", s)
    s = re.sub(r"([.!?])[.!?,;:]+", r"\1", s)
    s = s.strip(" ,;:-")
    if not s or not re.search(r"[A-Za-z]", s):
        return None
    words = []
    for word in s.split():
        core = re.sub(r"[^A-Za-z]", "", word)
        if len(core) >= 2 and core.isupper():
            word = word.lower()
        words.append(word)
    s = " ".join(words)
    if s[-1] not in ".!?":
        s += "."
    s = s[0].upper() + s[1:]
    if not ALLOWED.match(s):
        return None  # digits or symbols the tokenizer cannot write
    return s


def read_file(path: Path) -> tuple[bytes, dict[str, Entry]]:
    """queen.1c's bytes and table of contents, with errors that name the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise QueenFormatError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return data, read_toc(data)
    except QueenFormatError as e:
        raise QueenFormatError(f"{path}: {e}") from None
