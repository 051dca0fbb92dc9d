"""``credits-verify``: check the platform's transparency log without trusting it.

    credits-verify SOURCE --key KEY [--key KEY...] [--index N...] [--since FILE...]
                   [--program ID | --project ID] [--no-replay]
    credits-verify download URL FOLDER

SOURCE is the site's address (``https://credits.example.org``) or a folder that
``download`` filled. Each check prints one ``ok`` line; the first that fails
prints ``FAILED: <what>`` and the command exits 1 (2 for bad arguments or an
unreachable source). No database or Flask import: stdlib, ``cryptography``,
``requests`` and the pure modules of this package only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from credits.transparency.checkpoint import Checkpoint, parse_checkpoint_text
from credits.transparency.note import NoteError, Verifier, parse_note, parse_verifier_key
from credits.transparency.sources import (
    BALANCES_FILE,
    CHECKPOINT_FILE,
    HttpSource,
    LogSource,
    SourceError,
    open_source,
)
from credits.transparency.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    TileError,
    hashes_per_level,
    tile_for,
)
from credits.transparency.verifier import (
    VerificationFailed,
    check_balances,
    check_consistency,
    check_entries,
    check_inclusion,
    check_tiles,
    open_signed_checkpoint,
)

FAILED, USAGE = 1, 2


def verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credits-verify",
        description="Verify the credits transparency log and replay its ledger. "
        "'credits-verify download URL FOLDER' mirrors a log for offline checks.",
    )
    parser.add_argument("source", help="the site's https address, or a downloaded folder")
    parser.add_argument("--key", action="append", required=True, help="a log verifier key")
    parser.add_argument("--origin", help="the log's origin line (default: the checkpoint's)")
    parser.add_argument("--index", action="append", type=int, default=[], help="an entry")
    parser.add_argument("--since", action="append", type=Path, default=[], help="older checkpoint")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--program", type=int, help="compare one program's accounts")
    scope.add_argument("--project", type=int, help="compare one project's accounts")
    parser.add_argument("--no-replay", action="store_true", help="skip the ledger replay")
    return parser


def download_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="credits-verify download")
    parser.add_argument("url", help="the site's https address")
    parser.add_argument("folder", type=Path, help="where to write the files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["download"]:
            return download(download_parser().parse_args(args[1:]))
        return verify(verify_parser().parse_args(args))
    except (SourceError, NoteError) as error:
        sys.stderr.write(f"error: {error}\n")
        return USAGE
    except VerificationFailed as error:
        sys.stderr.write(f"FAILED: {error}\n")
        return FAILED


def _keys(texts: Sequence[str]) -> list[Verifier]:
    return [parse_verifier_key(text) for text in texts]


def verify(args: argparse.Namespace) -> int:
    verifiers = _keys(args.key)
    source = open_source(args.source)
    checkpoint = open_signed_checkpoint(
        source.checkpoint(), verifiers, args.origin, what="the checkpoint"
    )
    _ok(f"checkpoint of {checkpoint.origin}: size {checkpoint.size}, root {_hex(checkpoint)}")
    for path in args.since:
        old = open_signed_checkpoint(_read(path), verifiers, checkpoint.origin, what=str(path))
        check_consistency(source, old, checkpoint)
        _ok(f"consistent with {path} (size {old.size})")
    for index in args.index:
        entry = check_inclusion(source, checkpoint, index)
        _ok(f"entry {index} is in the log: {entry.decode('utf-8', 'replace')}")
    if not args.no_replay:
        _replay(source, checkpoint, args.program, args.project)
    return 0


def _replay(
    source: LogSource, checkpoint: Checkpoint, program: int | None, project: int | None
) -> None:
    entries = check_entries(source, checkpoint)
    _ok(f"all {len(entries)} entries match their tiles and the root")
    _ok(f"all {check_tiles(source, entries)} tiles match the entries")
    published = source.balances(checkpoint.size, program, project)
    complete = program is None and project is None
    replayed = check_balances(entries, published, complete=complete)
    scope = f"program {program}" if program else f"project {project}" if project else "all"
    _ok(
        f"replayed {replayed.ledger_entries} ledger entries: the {len(published['accounts'])} "
        f"published balances ({scope}) match"
    )


def download(args: argparse.Namespace) -> int:
    """Mirrors the checkpoint, every tile and bundle at its size and the balances."""
    source = HttpSource(args.url)
    data = source.checkpoint()
    try:
        size = parse_checkpoint_text(parse_note(data).text).size
    except NoteError as error:
        raise SourceError(f"the checkpoint is malformed: {error}") from None
    folder: Path = args.folder
    _write(folder / CHECKPOINT_FILE, data)
    paths = tile_paths(size)
    for path in paths:
        try:
            _write(folder / path, source.read(path))
        except TileError as error:
            raise SourceError(str(error)) from None
    balances = source.fetch("balances", {"size": size})
    if balances.status_code != 200:
        raise SourceError(f"balances: HTTP {balances.status_code}")
    _write(folder / BALANCES_FILE, balances.content)
    _ok(f"downloaded size {size}: {len(paths)} tiles and bundles, {BALANCES_FILE} to {folder}")
    return 0


def tile_paths(size: int) -> list[str]:
    """Every entry bundle and tile of every level at ``size``."""
    paths = []
    for level in range(ENTRIES_LEVEL, 64):
        count = hashes_per_level(size, max(level, 0))
        if count == 0:
            break
        for index in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            paths.append(tile_for(size, level, index).path())
    return paths


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as error:  # a file where a folder should be, no permission, a full disk
        raise SourceError(f"cannot write {path}: {error.strerror}") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SourceError(f"cannot read {path}: {error.strerror}") from None


def _hex(checkpoint: Checkpoint) -> str:
    return checkpoint.root_hash.hex()


def _ok(line: str) -> None:
    sys.stdout.write(f"ok: {line}\n")


if __name__ == "__main__":
    sys.exit(main())
