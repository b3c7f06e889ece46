"""The feedback store's files: named by their content (a sha256), never by anything a
request says; written whole or not at all (a temporary file in the same folder, then a
rename), and made durable before the index says they are there."""

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

# The formats the server decodes (app/inference/images.py), by their first bytes.
MAGIC = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)
TEMPORARY = ".part"  # what a file being written is called until it is renamed


def extension(data: bytes) -> str:
    """The file name suffix for an image's bytes, from its format's signature."""
    for magic, suffix in MAGIC:
        if data.startswith(magic):
            return suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "heic"
    return "img"


def content_name(data: bytes) -> tuple[str, str]:
    """The image's sha256 (its name) and suffix."""
    return hashlib.sha256(data).hexdigest(), extension(data)


def write_temporary(folder: Path, data: bytes) -> Path:
    """`data` in a new temporary file in `folder`, for a rename into place."""
    descriptor, name = tempfile.mkstemp(dir=folder, suffix=TEMPORARY)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    return Path(name)


def link_into(source: Path, target: Path) -> None:
    """`source`'s bytes at `target` too (a hard link when the filesystem allows, else a
    copy), by a rename, so `target` is whole or absent; then synced to disk."""
    temporary = target.parent / f"{secrets.token_hex(8)}{TEMPORARY}"
    try:
        os.link(source, temporary)
    except OSError:
        temporary = write_temporary(target.parent, source.read_bytes())
    try:
        sync_file(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(target.parent)


def sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_folder(folder: Path) -> None:
    """A rename in `folder` survives a power cut once the folder itself is synced."""
    sync_file(folder)
