"""Bounded log tails on big logs: how long :func:`tail_lines` takes, what it reads and
what it returns, and how fast the whole log streams for a download.

Writes, into a temporary folder that is removed afterwards, a ``--size-mb`` log
of each shape: ``single_line`` (one line, no newline until the last byte, like a
progress bar redrawn with ``\\r``) and ``many_lines`` (lines of about 120 bytes).
Each tail asks for ``--lines`` lines, as the job page does every few seconds;
the time is the median of ``--repeat`` runs with the file in the page cache.

    .venv/bin/python scripts/bench/log_tail.py
    .venv/bin/python scripts/bench/log_tail.py --size-mb 200 --lines 200 --repeat 20

Prints one line per shape and operation::

    size_mb=200 shape=single_line tail_ms=… read_bytes=… returned_bytes=…
    size_mb=200 shape=single_line stream_mb_per_s=… chunks=…
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from credits.jobs.logtail import iter_file_chunks, tail_lines, tail_lines_of

WRITE_BLOCK = 4 * 1024 * 1024


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        block = super().read(size)
        self.bytes_read += len(block or b"")
        return block or b""


def write_single_line(path: Path, size: int) -> None:
    pattern = (b"|" + b"#" * 63) * (WRITE_BLOCK // 64)
    with path.open("wb") as out:
        left = size - 1
        while left > 0:
            block = pattern[: min(left, WRITE_BLOCK)]
            out.write(block)
            left -= len(block)
        out.write(b"\n")


def write_many_lines(path: Path, size: int) -> None:
    with path.open("wb") as out:
        written, number = 0, 0
        while written < size:
            lines = b"".join(
                b"step %09d loss=0.%06d lr=3e-4 tokens/s=81234 grad_norm=1.0 %s\n"
                % (number + n, (number + n) % 999_999, b"." * 40)
                for n in range(10_000)
            )
            lines = lines[: size - written]
            out.write(lines)
            written += len(lines)
            number += 10_000


def bench_tail(path: Path, lines: int, repeat: int) -> tuple[float, int, int]:
    """(median ms, bytes read, bytes returned) of ``tail_lines(path, lines)``."""
    times = []
    text = ""
    for _ in range(repeat):
        started = time.perf_counter()
        text = tail_lines(path, lines)
        times.append((time.perf_counter() - started) * 1000)
    with CountingFile(path) as counted:
        tail_lines_of(counted, lines)
        read = counted.bytes_read
    return statistics.median(times), read, len(text.encode())


def bench_stream(path: Path) -> tuple[float, int]:
    """(MB per second, chunks) of streaming the whole file through iter_file_chunks."""
    started = time.perf_counter()
    chunks = sum(1 for _ in iter_file_chunks(path))
    elapsed = time.perf_counter() - started
    return path.stat().st_size / 1e6 / elapsed, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of each log, in MB")
    parser.add_argument("--lines", type=int, default=200, help="lines each tail asks for")
    parser.add_argument("--repeat", type=int, default=20, help="tails timed per shape")
    options = parser.parse_args()
    size = options.size_mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="credits-bench-log-") as folder:
        for shape, write in (("single_line", write_single_line), ("many_lines", write_many_lines)):
            path = Path(folder) / f"{shape}.log"
            write(path, size)
            tail_ms, read, returned = bench_tail(path, options.lines, options.repeat)
            print(
                f"size_mb={options.size_mb} shape={shape} lines={options.lines} "
                f"tail_ms={tail_ms:.3f} read_bytes={read} returned_bytes={returned}",
                flush=True,
            )
            mb_per_s, chunks = bench_stream(path)
            print(
                f"size_mb={options.size_mb} shape={shape} "
                f"stream_mb_per_s={mb_per_s:.0f} chunks={chunks}",
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()
