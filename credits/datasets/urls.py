"""Where a dataset's public pages, files and metadata documents live.

The exports (Croissant, DataCite, citations) write these absolute URLs, and
the catalogue's routes serve them; both take them from here. ``base`` is the
installation's public origin, e.g. ``https://credits.example.org``.
"""

from __future__ import annotations

from urllib.parse import quote


def _base(base: str) -> str:
    return base.rstrip("/")


def concept_url(base: str, concept_id: str) -> str:
    """The dataset: always its newest published version."""
    return f"{_base(base)}/datasets/{concept_id}"


def version_url(base: str, public_id: str) -> str:
    """One version's landing page (a tombstone once taken down)."""
    return f"{_base(base)}/datasets/versions/{public_id}"


def file_url(base: str, public_id: str, name: str) -> str:
    """A file's download; folders in the name stay as path segments."""
    return f"{version_url(base, public_id)}/files/{quote(name, safe='/')}"


def document_url(base: str, public_id: str, document: str) -> str:
    """A metadata document of a version: ``croissant.json``, ``datacite.json``,
    ``datasheet.md`` or ``SHA256SUMS``."""
    return f"{version_url(base, public_id)}/{document}"
