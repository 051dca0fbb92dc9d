"""Bounded reads of a job's output: the last lines for a page that polls, and the
whole file in chunks for a download.

Standard library only, so that the local executor's runner process may import it.

:func:`tail_lines` reads the file backwards in blocks and stops as soon as it holds
the lines asked for, or once it has read ``max_bytes`` (1 MiB) and one byte more
(which tells whether the bytes after it start a line), whichever comes first: a
200 MB log that is one line costs one MiB of reading, not 200 MB. What it returns
is bounded too: at most ``lines`` lines, each at most ``max_line_bytes`` (16 KiB)
of the file plus a marker, and never more than ``max_bytes`` of the file in all.
Its work and memory are linear in the bytes it reads.

The rules of what comes back:

- Lines end at ``\\n`` only. A progress bar that redraws itself with ``\\r`` stays
  one line, and the end of that line is its latest state.
- A line longer than ``max_line_bytes`` keeps its **end**, the newest output (the
  last state of a progress bar, the error at the end of a long line), behind a
  marker that counts the bytes not shown: ``[… 183,412,003 bytes cut …]``.
- When the lines asked for begin more than ``max_bytes`` before the end, the last
  ``max_bytes`` come back and the first line returned begins with the same marker,
  whose count is every byte of the file before what is shown (earlier lines
  included: they were never read). Fewer than ``lines`` lines then come back.
- A cut never splits a UTF-8 character: the kept part starts on a character
  boundary, and the one to three bytes of a split character count as cut. The
  text is decoded as UTF-8, each invalid byte replaced by U+FFFD.
- The text ends with a newline exactly when the file does.

:func:`iter_file_chunks` yields the whole file in chunks, oldest first, for a
download that never holds the file in memory.
"""

from __future__ import annotations

import io
import os
from collections.abc import Generator
from pathlib import Path
from typing import IO

BLOCK_BYTES = 64 * 1024  # one backwards read
MAX_TAIL_BYTES = 1024 * 1024  # the most a tail reads of a file
MAX_LINE_BYTES = 16 * 1024  # the most of one line a tail returns
CHUNK_BYTES = 64 * 1024  # one chunk of a whole-file stream
_MAX_CONTINUATION = 3  # a UTF-8 character has at most three continuation bytes


def cut_marker(count: int) -> str:
    """The marker put where ``count`` bytes are not shown: ``[… 1,234 bytes cut …]``."""
    return f"[… {count:,} byte{'' if count == 1 else 's'} cut …]"


def tail_lines(
    path: Path,
    lines: int,
    *,
    max_bytes: int = MAX_TAIL_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> str:
    """The last ``lines`` lines of the file at ``path``, read from its end; '' when
    the file is missing or ``lines`` is not positive. See the module docstring for
    the caps, the cut marker and the decoding."""
    _check_caps(max_bytes, max_line_bytes)
    if lines <= 0:
        return ""
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        return ""
    with handle:
        return tail_lines_of(handle, lines, max_bytes=max_bytes, max_line_bytes=max_line_bytes)


def tail_lines_of(
    stream: IO[bytes],
    lines: int,
    *,
    max_bytes: int = MAX_TAIL_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> str:
    """:func:`tail_lines` of a seekable binary stream (an open file, or ``BytesIO`` of
    output already in memory), read from its end with the same caps and rules."""
    _check_caps(max_bytes, max_line_bytes)
    if lines <= 0:
        return ""
    end = stream.seek(0, os.SEEK_END)
    data, unread = _read_back(stream, end, lines, max_bytes)
    return _render(data, unread, lines, max_bytes, max_line_bytes)


def tail_bytes(
    data: bytes,
    lines: int,
    *,
    max_bytes: int = MAX_TAIL_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> str:
    """:func:`tail_lines` of output already in memory."""
    return tail_lines_of(
        io.BytesIO(data), lines, max_bytes=max_bytes, max_line_bytes=max_line_bytes
    )


def drop_split_character(data: bytes) -> bytes:
    """``data`` less a UTF-8 character cut short at its end (by a byte limit that
    stopped inside it); other bytes, valid or not, are left alone."""
    for back in range(1, min(_MAX_CONTINUATION + 1, len(data)) + 1):
        byte = data[-back]
        if 0x80 <= byte <= 0xBF:
            continue  # a continuation byte: its character starts further back
        if 0xC0 <= byte <= 0xDF:
            needed = 2
        elif 0xE0 <= byte <= 0xEF:
            needed = 3
        elif 0xF0 <= byte <= 0xF7:
            needed = 4
        else:
            needed = 1
        return data[:-back] if needed > back else data
    return data


def iter_file_chunks(path: Path, chunk: int = CHUNK_BYTES) -> Generator[bytes, None, None]:
    """The whole file at ``path`` in chunks of at most ``chunk`` bytes, oldest first.

    The file is opened when iteration starts and read to the end it has then (a
    running job's later output is not waited for); a file missing at that moment
    yields nothing. Closing the iterator early closes the file.
    """
    if chunk < 1:
        raise ValueError(f"a chunk must be at least one byte; got {chunk}")
    return _chunks(path, chunk)


def _chunks(path: Path, chunk: int) -> Generator[bytes, None, None]:
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        return
    with handle:
        while block := handle.read(chunk):
            yield block


def _check_caps(max_bytes: int, max_line_bytes: int) -> None:
    if max_bytes < 1 or max_line_bytes < 1:
        raise ValueError(
            f"max_bytes and max_line_bytes must be positive; got {max_bytes}, {max_line_bytes}"
        )


def _read_back(stream: IO[bytes], end: int, lines: int, max_bytes: int) -> tuple[bytes, int]:
    """The end of the stream, read backwards a block at a time until it holds
    ``lines`` whole lines or ``max_bytes`` and one byte more, and how many bytes
    before it were not read.

    A line starts after a newline, so ``lines`` lines need ``lines`` newlines before
    the stream's last byte (a final newline ends the last line; it starts none). The
    byte read beyond ``max_bytes`` tells whether the bytes after it start a line.
    """
    budget = max_bytes + 1
    blocks: list[bytes] = []
    position = end
    newlines = 0
    first = True
    while position > 0 and newlines < lines and end - position < budget:
        step = min(BLOCK_BYTES, position, budget - (end - position))
        position -= step
        stream.seek(position)
        block = stream.read(step)
        newlines += block.count(b"\n")
        if first and block.endswith(b"\n"):
            newlines -= 1
        first = False
        blocks.append(block)
    blocks.reverse()
    return b"".join(blocks), position


def _render(data: bytes, unread: int, lines: int, max_bytes: int, max_line_bytes: int) -> str:
    """The last ``lines`` lines of ``data`` (its last ``max_bytes`` at most), each cut
    to ``max_line_bytes``; ``unread`` bytes came before ``data`` and were not read."""
    body_end = len(data) - 1 if data.endswith(b"\n") else len(data)
    start = body_end
    found = 0
    while found < lines:
        newline = data.rfind(b"\n", 0, start)
        if newline < 0:
            break
        start, found = newline, found + 1
    if found == lines:
        window, unread = data[start + 1 :], 0
    else:
        shown = max(0, len(data) - max_bytes)
        window, unread = data[shown:], unread + shown
    pieces = window.split(b"\n")
    cut = [_cut_line(pieces[0], unread, max_line_bytes)]
    cut += [_cut_line(piece, 0, max_line_bytes) for piece in pieces[1:]]
    return b"\n".join(cut).decode("utf-8", errors="replace")


def _cut_line(line: bytes, unread: int, max_line_bytes: int) -> bytes:
    """The line (without its newline) as returned: its last ``max_line_bytes`` behind a
    marker when it is longer, or when ``unread`` bytes before it were not read."""
    keep_from = max(0, len(line) - max_line_bytes)
    if keep_from == 0 and unread == 0:
        return line
    keep_from = _character_start(line, keep_from)
    return cut_marker(unread + keep_from).encode() + line[keep_from:]


def _character_start(data: bytes, index: int) -> int:
    """``index`` moved past the continuation bytes of a UTF-8 character it splits."""
    for _ in range(_MAX_CONTINUATION):
        if index < len(data) and 0x80 <= data[index] <= 0xBF:
            index += 1
        else:
            break
    return index
