"""Storage helpers: streaming originals in with their SHA-256, writing derived media, local paths for readers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage

CHUNK_BYTES = 1024 * 1024


def sha256_stream(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_path(path: str | Path) -> tuple[str, int]:
    with open(path, "rb") as stream:
        return sha256_stream(stream)


class HashingReader:
    """A file wrapper that hashes bytes as storage reads them, so an original is read once, not twice.

    Only the contiguous prefix is hashed, each byte once: S3 uploads read the body for their own checksum,
    seek back and read it again, which must not hash the same bytes twice.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        start = self._stream.tell() if self._stream.seekable() else self.size
        chunk = self._stream.read(size)
        end = start + len(chunk)
        if start <= self.size < end:
            self._digest.update(chunk[self.size - start :])
            self.size = end
        return chunk

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def put_bytes(name: str, payload: bytes) -> str:
    """Write derived media under a deterministic name; an existing object is kept (never overwritten)."""
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(payload))


def put_file(name: str, path: str | Path) -> str:
    if default_storage.exists(name):
        return name
    with open(path, "rb") as stream:
        return default_storage.save(name, File(stream, name=os.path.basename(name)))


@contextlib.contextmanager
def local_path(name: str) -> Iterator[Path]:
    """A local filesystem path for a stored file: the file itself on disk storage, a temporary copy on S3."""
    try:
        yield Path(default_storage.path(name))
        return
    except NotImplementedError:
        pass
    with scratch_named(name) as path:
        with default_storage.open(name, "rb") as stream, open(path, "wb") as copy:
            shutil.copyfileobj(stream, copy, CHUNK_BYTES)
        yield path


@contextlib.contextmanager
def scratch_named(name: str) -> Iterator[Path]:
    """A path in a fresh scratch folder ending in `name`'s own file name, removed with the folder afterwards.

    Readers name the file in their error messages, so a copy must carry the name the researcher gave it,
    not a random temporary one.
    """
    base = Path(name).name
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        yield Path(folder) / (base if base not in ("", ".", "..") else "upload")


def scratch_dir() -> Path:
    path = Path(settings.VAR_DIR) / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def delete_quietly(names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            default_storage.delete(name)
