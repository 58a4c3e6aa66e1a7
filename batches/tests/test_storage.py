from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batches.storage import DirectoryStorage


def test_it_stores_a_stream_and_reads_it_back(tmp_path: Path) -> None:
    store = DirectoryStorage(tmp_path)
    assert store.put_stream("7/file-1", iter([b"ab", b"cd"])) == 4
    with store.open("7/file-1") as handle:
        assert handle.read() == b"abcd"
    assert store.size("7/file-1") == 4
    store.delete("7/file-1")
    store.delete("7/file-1")  # already gone: no error
    assert not (tmp_path / "7" / "file-1").exists()


def test_a_stream_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"part"
        raise RuntimeError("the client left")

    store = DirectoryStorage(tmp_path)
    with pytest.raises(RuntimeError):
        store.put_stream("7/file-2", chunks())
    assert list((tmp_path / "7").iterdir()) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "7/../../x", "a b"])
def test_it_refuses_a_key_outside_its_directory(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        DirectoryStorage(tmp_path).open(key)
