"""Bounded log tails and whole-log chunks (credits/jobs/logtail.py).

The properties compare ``tail_lines_of`` with a reference that reads the whole
input and splits it naively, on small inputs with small blocks and caps, so that
every branch (several blocks, cut lines, a read stopped by ``max_bytes``, a cut
inside a multibyte character) is met in a few hundred examples.
"""

from __future__ import annotations

import io
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credits.jobs import logtail
from credits.jobs.logtail import (
    cut_marker,
    drop_split_character,
    iter_file_chunks,
    tail_bytes,
    tail_lines,
    tail_lines_of,
)

# Pieces of output: ASCII, newlines, a carriage return, 2-, 3- and 4-byte UTF-8
# characters and bytes that are not UTF-8 at all.
TOKENS = [b"a", b"bc", b"\n", b"\n", b"\r", "é".encode(), "€".encode(), "😀".encode(), b"\xff"]
CONTINUATION = range(0x80, 0xC0)


class CountingStream(io.BytesIO):
    """A BytesIO that counts the bytes and the calls read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0
        self.reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        block = super().read(size)
        self.bytes_read += len(block)
        self.reads += 1
        return block


def reference(data: bytes, lines: int, max_line_bytes: int) -> str:
    """The last ``lines`` lines of the whole input, each over the cap keeping its end."""
    if lines <= 0 or not data:
        return ""
    terminated = data.endswith(b"\n")
    chosen = (data[:-1] if terminated else data).split(b"\n")[-lines:]
    shown = []
    for line in chosen:
        if len(line) <= max_line_bytes:
            shown.append(line)
            continue
        start = len(line) - max_line_bytes
        skipped = 0
        while skipped < 3 and start < len(line) and line[start] in CONTINUATION:
            start, skipped = start + 1, skipped + 1
        shown.append(cut_marker(start).encode() + line[start:])
    return (b"\n".join(shown) + (b"\n" if terminated else b"")).decode("utf-8", "replace")


def window_start(data: bytes, lines: int) -> int:
    """Where the last ``lines`` lines of ``data`` begin."""
    body = data[:-1] if data.endswith(b"\n") else data
    starts = [0] + [index + 1 for index, byte in enumerate(body) if byte == ord("\n")]
    return starts[-lines] if lines <= len(starts) else 0


outputs = st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(
    data=outputs,
    lines=st.integers(min_value=0, max_value=8),
    max_line_bytes=st.integers(min_value=1, max_value=12),
    block=st.integers(min_value=1, max_value=9),
)
def test_within_the_read_cap_the_tail_is_the_naive_one(
    data: bytes, lines: int, max_line_bytes: int, block: int
) -> None:
    stream = CountingStream(data)
    with mock.patch.object(logtail, "BLOCK_BYTES", block):
        text = tail_lines_of(stream, lines, max_bytes=len(data) + 1, max_line_bytes=max_line_bytes)
    assert text == reference(data, lines, max_line_bytes)


@settings(max_examples=400, deadline=None)
@given(
    data=outputs,
    lines=st.integers(min_value=1, max_value=8),
    max_bytes=st.integers(min_value=1, max_value=40),
    block=st.integers(min_value=1, max_value=9),
)
def test_the_read_cap_bounds_what_is_read_and_marks_what_was_not(
    data: bytes, lines: int, max_bytes: int, block: int
) -> None:
    stream = CountingStream(data)
    big = 10_000  # no line cut: only the read cap is at work
    with mock.patch.object(logtail, "BLOCK_BYTES", block):
        text = tail_lines_of(stream, lines, max_bytes=max_bytes, max_line_bytes=big)
    assert stream.bytes_read <= max_bytes + 1  # one byte tells whether a line starts there
    if window_start(data, lines) >= len(data) - max_bytes:
        assert text == reference(data, lines, big)
        return
    # The lines asked for start before what was read: everything read comes back,
    # behind a marker counting what came before it (less a split character's tail).
    start = len(data) - max_bytes
    skipped = 0
    while skipped < 3 and start < len(data) and data[start] in CONTINUATION:
        start, skipped = start + 1, skipped + 1
    assert text == cut_marker(start) + data[start:].decode("utf-8", "replace")


def test_missing_empty_and_non_positive_requests_are_empty(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "absent.log", 10) == ""
    assert tail_lines(tmp_path / "absent" / "deeper.log", 10) == ""
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert tail_lines(empty, 10) == ""
    some = tmp_path / "some.log"
    some.write_bytes(b"one\ntwo\n")
    assert tail_lines(some, 0) == ""
    assert tail_lines(some, -3) == ""


def test_the_last_lines_come_back_with_the_file_own_final_newline(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text("".join(f"line {n}\n" for n in range(1, 11)))
    assert tail_lines(log, 3) == "line 8\nline 9\nline 10\n"
    assert tail_lines(log, 50) == log.read_text()
    log.write_text("first\nsecond\nno newline yet")
    assert tail_lines(log, 2) == "second\nno newline yet"
    log.write_text("\n\n\n")
    assert tail_lines(log, 2) == "\n\n"


def test_only_a_newline_ends_a_line(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"epoch 1\n 10%\r 50%\r100%\n")
    assert tail_lines(log, 1) == " 10%\r 50%\r100%\n"


def test_a_huge_single_line_keeps_its_end_and_counts_the_cut(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"x" * 199_990 + b"0123456789\n")
    text = tail_lines(log, 200, max_bytes=64 * 1024, max_line_bytes=1000)
    assert text == cut_marker(199_000) + "x" * 990 + "0123456789\n"
    assert cut_marker(199_000) == "[… 199,000 bytes cut …]"
    assert cut_marker(1) == "[… 1 byte cut …]"


def test_a_line_cut_counts_its_own_bytes_only(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"short\n" + b"y" * 30 + b"END\nlast\n")
    text = tail_lines(log, 3, max_line_bytes=10)
    assert text == "short\n" + cut_marker(23) + "yyyyyyyEND\nlast\n"


def test_lines_at_the_caps_are_whole_and_one_byte_over_is_cut(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"a" * 16 + b"\n")
    assert tail_lines(log, 1, max_line_bytes=16) == "a" * 16 + "\n"
    log.write_bytes(b"b" + b"a" * 16 + b"\n")
    assert tail_lines(log, 1, max_line_bytes=16) == cut_marker(1) + "a" * 16 + "\n"
    # A file of exactly max_bytes is read whole; one byte more is not.
    log.write_bytes(b"c" * 63 + b"\n")
    assert tail_lines(log, 1, max_bytes=64) == "c" * 63 + "\n"
    log.write_bytes(b"d" + b"c" * 63 + b"\n")
    assert tail_lines(log, 1, max_bytes=64) == cut_marker(1) + "c" * 63 + "\n"
    # Whole lines that fill max_bytes exactly come back unmarked.
    log.write_bytes(b"earlier\n" + b"c" * 63 + b"\n")
    assert tail_lines(log, 1, max_bytes=64) == "c" * 63 + "\n"
    assert tail_lines(log, 2, max_bytes=64) == cut_marker(8) + "c" * 63 + "\n"


def test_a_cut_never_splits_a_character(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text("é" * 10 + "\n")  # 20 bytes
    text = tail_lines(log, 1, max_line_bytes=5)  # the cut lands inside a character
    assert text == cut_marker(16) + "éé\n"
    log.write_text("😀" * 5)  # 20 bytes
    assert tail_lines(log, 1, max_line_bytes=6) == cut_marker(16) + "😀"
    assert tail_lines(log, 1, max_bytes=7) == cut_marker(16) + "😀"
    assert "\ufffd" not in tail_lines(log, 1, max_bytes=9)


def test_bytes_that_are_not_utf8_are_replaced(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"ok \xff\xfe done\n")
    assert tail_lines(log, 1) == "ok \ufffd\ufffd done\n"


def test_reads_stop_at_the_cap_on_a_large_single_line() -> None:
    stream = CountingStream(b"z" * (5 * 1024 * 1024) + b"\n")
    text = tail_lines_of(stream, 200)
    assert stream.bytes_read == logtail.MAX_TAIL_BYTES + 1
    assert stream.reads == logtail.MAX_TAIL_BYTES // logtail.BLOCK_BYTES + 1
    assert text == cut_marker(5 * 1024 * 1024 - logtail.MAX_LINE_BYTES) + "z" * (16 * 1024) + "\n"


def test_reads_stop_once_the_lines_are_found() -> None:
    lines = b"".join(b"%06d\n" % n for n in range(100_000))  # 700 kB of 7-byte lines
    stream = CountingStream(lines)
    assert tail_lines_of(stream, 3) == "099997\n099998\n099999\n"
    assert stream.reads == 1
    assert stream.bytes_read == logtail.BLOCK_BYTES


def test_tail_of_bytes_in_memory_follows_the_same_rules() -> None:
    assert tail_bytes(b"a\nb\nc\n", 2) == "b\nc\n"
    assert tail_bytes(b"x" * 40, 1, max_line_bytes=8) == cut_marker(32) + "x" * 8
    assert tail_bytes(b"", 5) == ""


@pytest.mark.parametrize("text", ["", "a", "é", "€", "😀", "ab€😀"])
def test_drop_split_character_drops_only_a_character_cut_short(text: str) -> None:
    data = text.encode()
    assert drop_split_character(data) == data
    last = text[-1:].encode()
    for cut in range(1, len(last)):  # every way to stop inside the last character
        assert drop_split_character(data[:-cut]) == data[: -len(last)]
    assert drop_split_character(b"ok\xff") == b"ok\xff"  # not UTF-8 at all: left alone
    assert drop_split_character(b"\x80\x80\x80\x80") == b"\x80\x80\x80\x80"


def test_caps_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        tail_lines(tmp_path / "absent.log", 5, max_bytes=0)
    with pytest.raises(ValueError, match="positive"):
        tail_bytes(b"a\n", 5, max_line_bytes=0)
    with pytest.raises(ValueError, match="chunk"):
        iter_file_chunks(tmp_path / "absent.log", chunk=0)


def test_iter_file_chunks_streams_the_whole_file(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    data = bytes(range(256)) * 1000  # 256,000 bytes
    log.write_bytes(data)
    chunks = list(iter_file_chunks(log))
    assert b"".join(chunks) == data
    assert [len(chunk) for chunk in chunks] == [65536, 65536, 65536, 59392]
    assert [len(chunk) for chunk in iter_file_chunks(log, chunk=100_000)] == [
        100_000,
        100_000,
        56_000,
    ]
    assert list(iter_file_chunks(tmp_path / "absent.log")) == []
    log.write_bytes(b"")
    assert list(iter_file_chunks(log)) == []


def test_iter_file_chunks_opens_the_file_when_iteration_starts(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    chunks = iter_file_chunks(log, chunk=4)
    log.write_bytes(b"written after the call")
    assert next(chunks) == b"writ"
    chunks.close()
