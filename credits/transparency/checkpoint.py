"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): a signed tree head.

The body of a signed note::

    <origin>
    <tree size, decimal, no leading zeroes>
    <root hash, base64>
    [<extension line>...]

Only the standard library, ``cryptography`` and this package's note module
are imported: the standalone verifier uses this module.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Sequence
from dataclasses import dataclass

from credits.transparency.merkle import HASH_SIZE
from credits.transparency.note import (
    MalformedNote,
    OpenedNote,
    Signer,
    Verifier,
    check_text,
    open_note,
    sign_note,
    strict_b64decode,
)

_SIZE = re.compile(r"^(0|[1-9][0-9]*)$")


class MalformedCheckpoint(MalformedNote):
    """A note whose text is not a checkpoint, or not of the expected log."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's origin, tree size and root hash, and any extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedCheckpoint("a checkpoint's origin is one non-empty line")
        if self.size < 0 or len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpoint("a checkpoint has a size ≥ 0 and a 32-byte root hash")
        if any(not line or "\n" in line for line in self.extensions):
            raise MalformedCheckpoint("a checkpoint's extension lines are non-empty lines")

    def text(self) -> str:
        """The note text: every line, each ending in a newline."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash).decode()]
        return "".join(line + "\n" for line in [*lines, *self.extensions])


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose note verified, with who signed it."""

    checkpoint: Checkpoint
    note: OpenedNote


def parse_checkpoint_text(text: str) -> Checkpoint:
    """The checkpoint in a note's text; MalformedCheckpoint for anything off."""
    try:
        check_text(text)
    except MalformedNote as error:
        raise MalformedCheckpoint(str(error)) from None
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint("a checkpoint has an origin, a size and a root hash")
    origin, size, root, *extensions = lines
    if not _SIZE.match(size):
        raise MalformedCheckpoint(f"a checkpoint's size is a decimal number: {size!r}")
    try:
        root_hash = strict_b64decode(root, "root hash")
    except MalformedNote as error:
        raise MalformedCheckpoint(str(error)) from None
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> bytes:
    """The checkpoint as a note signed by each signer."""
    return sign_note(checkpoint.text(), signers)


def open_checkpoint(data: bytes, *, origin: str, verifiers: Sequence[Verifier]) -> SignedCheckpoint:
    """Verifies a signed checkpoint of the log named ``origin``.

    Raises MalformedNote or MalformedCheckpoint for a malformed note or body
    (or another log's origin), and UnverifiedNote as open_note does.
    """
    opened = open_note(data, verifiers)
    checkpoint = parse_checkpoint_text(opened.text)
    if checkpoint.origin != origin:
        raise MalformedCheckpoint(f"the checkpoint is of {checkpoint.origin!r}, not {origin!r}")
    return SignedCheckpoint(checkpoint, opened)
