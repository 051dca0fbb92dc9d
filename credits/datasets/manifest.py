"""A version's manifest: its files as (name, sha256, size), and the hash that pins them.

The manifest hash is the SHA-256 of the UTF-8 bytes of a JSON array of
``[name, sha256, size]`` triples sorted by name, written without spaces and
with non-ASCII characters kept as they are, e.g.
``[["data.csv","9f86…",4]]``. Anyone holding the file list can recompute it,
and the audit event of a publication carries it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Protocol


class ManifestEntry(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...


def canonical_manifest(files: Iterable[ManifestEntry]) -> str:
    entries = sorted([file.name, file.sha256, file.size] for file in files)
    return json.dumps(entries, separators=(",", ":"), ensure_ascii=False)


def manifest_hash(files: Iterable[ManifestEntry]) -> str:
    return hashlib.sha256(canonical_manifest(files).encode("utf-8")).hexdigest()


def sha256sums(files: Iterable[ManifestEntry]) -> str:
    """The files in ``sha256sum`` format (``<hash>  <name>``), sorted by name, so that
    ``sha256sum -c SHA256SUMS`` checks a download."""
    return "".join(f"{file.sha256}  {file.name}\n" for file in sorted(files, key=lambda f: f.name))
