"""Reader of CTranslate2's ``model.bin`` (binary versions 2-6), with numpy alone.

Layout, all little-endian (written by ``ctranslate2.specs.model_spec.ModelSpec._serialize``):

    u32 binary_version
    str spec_name, u32 spec_revision                      (binary_version >= 2)
    u32 n_variables, then per variable:
        str name, u8 rank, u32 dims[rank],
        u8 dtype_id, u32 n_bytes                           (binary_version >= 4)
        u8 item_size, u32 n_items                          (binary_version < 4: float or int by item size)
        n_bytes of row-major data
    u32 n_aliases, then per alias: str alias, str target   (binary_version >= 3)

where ``str`` is a u16 length (counting a trailing NUL) and the UTF-8 bytes with the NUL. Quantised weights
(``int8``, ``int16``) come with a ``<name>_scale`` variable: ``weight = quantised / scale``, one scale per output
row for int8 (a conv1d weight is flattened to 2-D first), one scalar for int16.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Ct2Model", "CT2_DTYPES", "dequantize", "read_ct2"]

# dtype ids of CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 is read as its bit pattern
CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY = {
    "float32": np.dtype("<f4"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
}
_BY_ITEM_SIZE = {1: "int8", 2: "int16", 4: "float32"}  # binary versions < 4 stored only an item size
MAX_BINARY_VERSION = 6


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 model.bin this reader understands."""


@dataclass(frozen=True)
class Ct2Model:
    """The variables of one model.bin."""

    binary_version: int  # the format version in the file's first 4 bytes
    spec: str  # the model specification's name, e.g. "WhisperSpec" ("" before binary version 2)
    revision: int  # the specification's revision
    variables: dict[str, np.ndarray]  # name -> array as stored (bfloat16 already widened to float32)
    aliases: dict[str, str]  # alias name -> the name of the variable it shares


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.offset, self.path = data, 0, path

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise Ct2FormatError(f"{self.path}: truncated at byte {self.offset} (needs {size} more)")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.unpack("H")
        if length == 0:
            raise Ct2FormatError(f"{self.path}: empty string at byte {self.offset}")
        return self.take(length)[:-1].decode("utf-8")


def read_ct2(path: str | Path) -> Ct2Model:
    """Read every variable and alias of ``path`` (a CTranslate2 ``model.bin``)."""
    path = Path(path)
    cursor = _Cursor(path.read_bytes(), path)
    version = cursor.unpack("I")
    if not 1 <= version <= MAX_BINARY_VERSION:
        raise Ct2FormatError(f"{path}: binary version {version}, this reader knows 1-{MAX_BINARY_VERSION}")
    spec, revision = ("", 1)
    if version >= 2:
        spec, revision = cursor.string(), cursor.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(cursor.unpack("I")):
        name = cursor.string()
        shape = tuple(cursor.unpack("I") for _ in range(cursor.unpack("B")))
        if version >= 4:
            type_id = cursor.unpack("B")
            if type_id >= len(CT2_DTYPES):
                raise Ct2FormatError(f"{path}: variable {name}: unknown dtype id {type_id}")
            dtype, size = CT2_DTYPES[type_id], cursor.unpack("I")
        else:
            item_size = cursor.unpack("B")
            dtype, size = _BY_ITEM_SIZE[item_size], cursor.unpack("I") * item_size
        expected = int(np.prod(shape, dtype=np.int64)) * _NUMPY[dtype].itemsize
        if size != expected:
            raise Ct2FormatError(f"{path}: variable {name}: {size} bytes for shape {shape} of {dtype}")
        array = np.frombuffer(cursor.take(size), dtype=_NUMPY[dtype]).reshape(shape)
        if dtype == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array
    aliases: dict[str, str] = {}
    if version >= 3:
        for _ in range(cursor.unpack("I")):
            alias = cursor.string()
            aliases[alias] = cursor.string()
    if cursor.offset != len(cursor.data):
        raise Ct2FormatError(f"{path}: {len(cursor.data) - cursor.offset} bytes after the last alias")
    return Ct2Model(version, spec, revision, variables, aliases)


def dequantize(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 weights: every ``X`` with a ``X_scale`` sibling divided by its scale (per output row, or one
    scalar), other floating variables widened to float32; scales dropped, integer scalars kept as they are."""
    out: dict[str, np.ndarray] = {}
    for name, value in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        scale = variables.get(name + "_scale")
        if scale is not None:
            scale = scale.astype(np.float32)
            if scale.ndim == 1:
                scale = scale.reshape(-1, *([1] * (value.ndim - 1)))
            out[name] = value.astype(np.float32) / scale
        elif value.dtype.kind == "f":
            out[name] = value.astype(np.float32)
        else:
            out[name] = value
    return out
