"""An ONNX file's metadata, read without loading the model; and a file's sha256.

Finding which compiled file serves MODEL_PATH means reading candidates'
metadata. An ONNX Runtime session would do it at the cost of loading and
optimising the whole graph (about 60 MB that a process keeps, even once freed,
and `python -m app serve` is the supervisor of WEB_CONCURRENCY workers). An ONNX
file is one protobuf ModelProto, whose wire format is a flat run of tagged,
length-prefixed fields: metadata_props is field 14, a run of {key: 1, value: 2}
string pairs, and every other field (the graph with its weights among them) is
stepped over by its length.
"""

import hashlib
from pathlib import Path

METADATA_PROPS = 14
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data: memoryview) -> dict[int, list[memoryview]]:
    """The length-delimited fields of one message, by number; others are skipped."""
    found: dict[int, list[memoryview]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            _, pos = _varint(data, pos)
        elif wire == FIXED64:
            pos += 8
        elif wire == FIXED32:
            pos += 4
        elif wire == LENGTH_DELIMITED:
            length, pos = _varint(data, pos)
            found.setdefault(number, []).append(data[pos : pos + length])
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
    return found


def metadata_props(path: Path) -> dict[str, str]:
    """The file's metadata_props; ValueError when it is not a protobuf message."""
    props = {}
    for entry in _fields(memoryview(path.read_bytes())).get(METADATA_PROPS, []):
        pair = _fields(entry)
        key, value = (bytes(pair.get(n, [b""])[0]).decode() for n in (1, 2))
        props[key] = value
    return props


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file: what names an export and its compiled file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
