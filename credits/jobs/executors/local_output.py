"""A local job's ``output.log``, kept under a size cap with its newest output.

The runner copies everything the job prints into the log. A job that prints
without end would otherwise fill the platform's disk, so once the file passes
its cap the oldest half is cut: the file becomes a marker line that counts every
byte cut so far (``[… 1,234 bytes cut …]``, the marker of
:mod:`credits.jobs.logtail`) followed by the newest part, starting at a line
where one starts near the cut. The tail a page shows is then what it was before
the cut. The new file is written beside the old one and renamed over it, so a
reader sees the old file or the new, whole; the copy is streamed, never held in
memory, and costs no more than the bytes the job wrote since the last cut.

Only the standard library and ``logtail`` are imported: the runner uses this.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from credits.jobs.logtail import MAX_LINE_BYTES, cut_marker

COPY_CHUNK = 1024 * 1024
# A UTF-8 character has at most three continuation bytes (0b10xxxxxx).
_MAX_CONTINUATION = 3


def open_private(path: Path) -> BinaryIO:
    """``path`` opened for appending, created readable by its owner alone."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


class CappedLog:
    """An append-only log file that never grows much past ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._handle = open_private(path)
        self._size = os.fstat(self._handle.fileno()).st_size
        self._marker_bytes = 0  # the marker line at the start of the file, if any
        self._cut = 0  # bytes of output cut so far

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._handle.close()

    def write(self, data: bytes) -> None:
        """Appends ``data`` at once (readers see it) and cuts the file if it is too big."""
        self._handle.write(data)
        self._handle.flush()
        self._size += len(data)
        if self._size > self.max_bytes:
            self._cut_oldest_half()

    def _cut_oldest_half(self) -> None:
        keep_from = self._size - self.max_bytes // 2
        temporary = self.path.with_name(f".{self.path.name}.cut")
        with self.path.open("rb") as old, open_private(temporary) as new:
            new.truncate(0)  # a leftover of a runner that died mid-cut
            old.seek(keep_from)
            head = old.read(MAX_LINE_BYTES)
            start = _kept_start(head)
            self._cut += keep_from + start - self._marker_bytes
            marker = f"{cut_marker(self._cut)}\n".encode()
            new.write(marker + head[start:])
            shutil.copyfileobj(old, new, COPY_CHUNK)
            size = new.tell()
        temporary.replace(self.path)
        self._handle.close()
        self._handle = open_private(self.path)
        self._size, self._marker_bytes = size, len(marker)


def _kept_start(head: bytes) -> int:
    """Where the kept part starts in its first bytes: after the first newline, or
    when there is none, at the first whole UTF-8 character."""
    newline = head.find(b"\n")
    if newline >= 0:
        return newline + 1
    start = 0
    while start < min(_MAX_CONTINUATION, len(head)) and head[start] & 0xC0 == 0x80:
        start += 1
    return start
