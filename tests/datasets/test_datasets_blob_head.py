"""Reading a blob's head asks the store for the head only."""

from __future__ import annotations

from collections.abc import Iterator

from credits.datasets.blobs import read_head


class _RangeRecorder:
    """A store of one blob of 1 MiB that remembers the ranges asked of it."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int | None]] = []
        self.data = bytes(range(256)) * 4096

    def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        del sha256
        self.asked.append((start, end))
        stop = len(self.data) if end is None else min(end, len(self.data))
        for offset in range(start, stop, 65_536):
            yield self.data[offset : min(offset + 65_536, stop)]


def test_the_head_of_a_blob_is_asked_of_the_store_as_a_range_of_that_size() -> None:
    store = _RangeRecorder()
    head = read_head(store, "0" * 64, 1000)  # type: ignore[arg-type]
    assert head == store.data[:1000]
    assert store.asked == [(0, 1000)]
