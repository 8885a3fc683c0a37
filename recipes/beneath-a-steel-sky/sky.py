"""A reader for the speech and English text of *Beneath a Steel Sky* (the CD "talkie" release, sky.dnr + sky.dsk).

Everything here is a fact about the game's file formats (see ../shared/notes/real-speech-sources.md):

- ``sky.dnr``: a u32 little-endian file count, then 8-byte records: u16 file number, u24 offset (bit 23 set: in
  16-byte units), u24 size field (low 22 bits: stored size; bit 22: the 22-byte header is not part of the packed
  data; bit 23: stored uncompressed).
- ``sky.dsk``: the files. Each starts with a 22-byte header of 11 little-endian u16 (flag first; the total size is
  ``(flag & 0xFF00) << 8 | word 6``). Bit 7 of the flag set (and the record not "uncompressed"): the rest is Rob
  Northen ProPack method 1 data (``unpack_rnc1``).
- Speech: file 50000 + section base + line, unsigned 8-bit PCM at 11,025 Hz after the header; its text is line
  ``line`` of text section ``section`` (text id ``section << 12 | line``).
- English text of section ``s``: file 60600 + s, Huffman-coded with a tree that is not in the game data (the JSON
  tree recovered from ScummVM's binary; ``read_text_section``).

Nothing of the game is stored in this repository; the recipe downloads the Debian package.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

HEADER = 22  # bytes of the header every file in sky.dsk starts with
SPEECH_BASE = 50000  # speech file = SPEECH_BASE + SECTION_BASES[section] + line
SECTION_BASES = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)
TEXT_BASE = 60600  # English text of section s = TEXT_BASE + s
NARRATION = range(59494, 59673)  # speech files with no text id: unlabelled narration
SAMPLE_RATE = 11025  # the speech's sampling rate (unsigned 8-bit mono)
RNC_MAGIC = b"RNC\x01"
RNC_HEADER = 18  # magic, u32 unpacked size, u32 packed size, 2 CRCs, leeway byte, chunk count


class SkyFormatError(ValueError):
    """The data files are not the layout this reader knows (truncated, corrupt or a different release)."""


@dataclass(frozen=True)
class Record:
    number: int  # file number, e.g. 50017
    offset: int  # byte offset in sky.dsk
    size: int  # stored bytes in sky.dsk
    header_outside: bool  # bit 22: the 22-byte header is not part of the packed data
    stored: bool  # bit 23: stored uncompressed whatever the header says


def read_dnr(data: bytes) -> dict[int, Record]:
    """sky.dnr's records: file number -> Record."""
    if len(data) < 4:
        raise SkyFormatError("too short for a file count")
    (count,) = struct.unpack_from("<I", data, 0)
    if 4 + 8 * count != len(data):
        raise SkyFormatError(f"{count} records need {4 + 8 * count} bytes, the file has {len(data)}")
    records = {}
    for pos in range(4, len(data), 8):
        number = struct.unpack_from("<H", data, pos)[0]
        offset = int.from_bytes(data[pos + 2 : pos + 5], "little")
        flags = int.from_bytes(data[pos + 5 : pos + 8], "little")
        if offset & 0x800000:
            offset = (offset & 0x7FFFFF) << 4
        records[number] = Record(
            number, offset, flags & 0x3FFFFF, bool(flags & 0x400000), bool(flags & 0x800000)
        )
    return records


def _read_bits_lsb(data: bytes, pos: int, ncur: int, cur: int, n: int) -> tuple[int, int, int, int]:
    """n bits (n <= 16) of an RNC method 1 bit stream: LSB first from 16-bit little-endian words.

    ``cur`` holds the ``ncur`` unread bits of the current word; ``pos`` is the next unread word, which becomes
    current only when more bits are needed than ``cur`` has. Returns (value, pos, ncur, cur)."""
    if n <= ncur:
        return cur & ((1 << n) - 1), pos, ncur - n, cur >> n
    if pos >= len(data) + 2:
        raise SkyFormatError("packed data ends inside its bit stream")
    # the reader loads one word ahead of the bits it uses, and the packer may end its data inside that word:
    # bytes past the end read as 0 (the bits are never used; the unpacked size is checked at the end)
    word = int.from_bytes(data[pos : pos + 2].ljust(2, b"\0"), "little")
    value = cur | (word << ncur)
    take = n - ncur
    return value & ((1 << n) - 1), pos + 2, 16 - take, word >> take


class _BitReader:
    """The RNC method 1 input: a bit stream interleaved with raw bytes (see ``_read_bits_lsb``)."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos, self.ncur, self.cur = data, pos, 0, 0

    def bits(self, n: int) -> int:
        value, self.pos, self.ncur, self.cur = _read_bits_lsb(self.data, self.pos, self.ncur, self.cur, n)
        return value

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SkyFormatError("packed data ends inside a literal run")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def table(self) -> dict[tuple[int, int], int]:
        """A canonical Huffman table: a 5-bit count, 4-bit code lengths; (length, code) -> symbol."""
        lengths = [self.bits(4) for _ in range(self.bits(5))]
        codes, code = {}, 0
        for length in range(1, 17):
            for symbol, size in enumerate(lengths):
                if size == length:
                    codes[(length, code >> (16 - length))] = symbol
                    code += 1 << (16 - length)
        return codes

    def value(self, codes: dict[tuple[int, int], int]) -> int:
        """One coded value: a symbol v read MSB-first; 0 and 1 as they are, else (1 << (v-1)) | v-1 more bits."""
        code = 0
        for length in range(1, 17):
            code = code << 1 | self.bits(1)
            symbol = codes.get((length, code))
            if symbol is not None:
                break
        else:
            raise SkyFormatError("a Huffman code not in its table")
        if symbol < 2:
            return symbol
        return (1 << (symbol - 1)) | self.bits(symbol - 1)


def unpack_rnc1(packed: bytes) -> bytes:
    """Rob Northen ProPack method 1: ``RNC\\x01``, u32 BE unpacked size, u32 BE packed size, CRCs, the chunk
    count at byte 17, then per chunk three Huffman tables (literal run lengths, match distances, match lengths),
    a 16-bit step count and the steps: a literal run copied from the input, then (but after a chunk's last step)
    a match of length + 2 bytes from distance + 1 back."""
    if packed[:4] != RNC_MAGIC or len(packed) < RNC_HEADER:
        raise SkyFormatError("packed data does not start with RNC method 1's signature")
    unpacked_size = struct.unpack_from(">I", packed, 4)[0]
    chunks = packed[17]
    reader = _BitReader(packed, RNC_HEADER)
    reader.bits(2)  # two flag bits: lock and key, unused here
    out = bytearray()
    for _ in range(chunks):
        runs, distances, lengths = reader.table(), reader.table(), reader.table()
        steps = reader.bits(16)
        for step in range(steps, 0, -1):
            run = reader.value(runs)
            if run:
                out += reader.raw(run)
            if step > 1:
                back = reader.value(distances) + 1
                length = reader.value(lengths) + 2
                if back > len(out):
                    raise SkyFormatError("a match reaches before the start of the output")
                start = len(out) - back
                if length <= back:
                    out += out[start : start + length]
                else:  # an overlapping copy repeats the last ``back`` bytes
                    pattern = bytes(out[start:])
                    out += (pattern * (length // back + 1))[:length]
    if len(out) != unpacked_size:
        raise SkyFormatError(f"packed data gives {len(out)} bytes, its header says {unpacked_size}")
    return bytes(out)


def read_file(dsk: bytes, record: Record) -> bytes:
    """One file of sky.dsk, unpacked: its 22-byte header, then its data."""
    stored = dsk[record.offset : record.offset + record.size]
    if len(stored) != record.size or record.size < HEADER:
        raise SkyFormatError(f"file {record.number} runs past the end of sky.dsk")
    flag = struct.unpack_from("<H", stored, 0)[0]
    if record.stored or not flag & 0x80:
        return stored
    body = unpack_rnc1(stored[HEADER:])
    data = body if record.header_outside else stored[:HEADER] + body
    total = (flag & 0xFF00) << 8 | struct.unpack_from("<H", stored, 12)[0]
    if len(data) != total:
        raise SkyFormatError(f"file {record.number} unpacks to {len(data)} bytes, its header says {total}")
    return data


def speech_file(section: int, line: int) -> int:
    return SPEECH_BASE + SECTION_BASES[section] + line


def speech_pcm(data: bytes) -> bytes:
    """A speech file's unsigned 8-bit 11,025 Hz samples (after the header)."""
    return data[HEADER:]


@dataclass(frozen=True)
class TextTree:
    nodes: tuple[tuple[int, int, int], ...]  # node k = (left, right, byte); a leaf has left == right == 0


def load_tree(path: Path) -> TextTree:
    """The English text's Huffman tree from its JSON file ({"nodes": [[left, right, byte], ...]})."""
    try:
        nodes = json.loads(path.read_text(encoding="utf-8"))["nodes"]
        tree = TextTree(tuple((int(a), int(b), int(c)) for a, b, c in nodes))
    except OSError as e:
        raise SkyFormatError(f"{path}: cannot read the text tree ({e.strerror})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SkyFormatError(
            f"{path}: not a text tree (a JSON object with 'nodes': [[l, r, byte], ...]): {e}"
        ) from None
    if not tree.nodes or any(max(a, b) >= len(tree.nodes) for a, b, _ in tree.nodes):
        raise SkyFormatError(f"{path}: a node of the text tree points outside it")
    return tree


def read_text_section(data: bytes, tree: TextTree) -> list[str]:
    """Every message of one text file (file 60600 + section), in line order, decoded as Latin-1."""
    if len(data) < 4:
        raise SkyFormatError("text file too short")
    skip_at, bits_at = struct.unpack_from("<HH", data, 0)
    count = bits_at - skip_at
    blocks = (count + 31) // 32
    if count <= 0 or 4 + 2 * (blocks - 1) > skip_at or bits_at > len(data):
        raise SkyFormatError("text file's tables do not fit it")
    messages = []
    start = 0
    for line in range(count):
        if line % 32 == 0:
            start = sum(struct.unpack_from(f"<{line // 32}H", data, 4)) if line else 0
        messages.append(_decode_message(data, bits_at, start, tree))
        skip = data[skip_at + line]
        start += (skip & 0x7F) << 3 if skip & 0x80 else skip
    return messages


def _decode_message(data: bytes, bits_at: int, start: int, tree: TextTree) -> str:
    """One message from 2-bit position ``start``: bits read from bit 7 down to bit 0 of each byte, each character
    a walk of the tree from node 0 (bit 0 left, bit 1 right) to a leaf; the leaf byte 0 ends the message."""
    pos = bits_at + start // 4
    bit = 7 - 2 * (start % 4)
    chars = bytearray()
    nodes = tree.nodes
    while True:
        node = 0
        while nodes[node][0] or nodes[node][1]:
            if pos >= len(data):
                raise SkyFormatError("a message runs past the end of its text file")
            node = nodes[node][(data[pos] >> bit) & 1]
            bit -= 1
            if bit < 0:
                bit, pos = 7, pos + 1
        if nodes[node][2] == 0:
            return chars.decode("latin-1")
        chars.append(nodes[node][2])
        if len(chars) > 4096:
            raise SkyFormatError("a message with no end (wrong text tree?)")
