"""Where the bytes of files live: a small interface, and the directory that implements it.

    store = storage()                         # the process's store, from PORTICO_FILES_DIR
    size = store.put_stream(key, chunks)      # written whole or not at all
    with store.open(key) as handle: ...       # a binary file object, read as a stream
    store.size(key); store.delete(key)

Keys are relative paths chosen by Portico (`<tenant id>/<file id>`), never by
a client. Another backend (an S3-compatible bucket) implements the same four
methods: `put_stream` as a multipart upload, `open` as a streamed GET.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings

_KEY = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*")


class Storage(Protocol):
    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store what `chunks` yields under `key`; its size. An error raised by `chunks` leaves nothing stored."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def delete(self, key: str) -> None:
        """Remove `key`; one that is already gone is no error."""
        ...

    def size(self, key: str) -> int: ...


class DirectoryStorage:
    """Files in a local (or mounted) directory, written to a temporary name and renamed once complete."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.partial")
        size = 0
        try:
            with partial.open("xb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                # A file said to be stored must survive a crash of the machine, not only of the process.
                os.fsync(handle.fileno())
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size


@functools.cache
def _directory(root: str) -> DirectoryStorage:
    return DirectoryStorage(Path(root))


def storage() -> Storage:
    """The store named by the settings (read each time, so a test may point it elsewhere)."""
    return _directory(settings.PORTICO_FILES_DIR)
