"""Finding a version's file by the name a client sends.

Names are stored in NFC (:func:`credits.storage.names.safe_file_name`), so a name
typed on a system that sends another Unicode form (macOS sends NFD: ``e`` and a
combining accent) must be brought to NFC before it is compared, or a file that
an upload accepted could never be downloaded or removed by the same name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from credits.datasets.models import DatasetFile


def stored_name(name: str) -> str:
    """``name`` in the form file names are stored in (NFC)."""
    return unicodedata.normalize("NFC", name)


def file_named(files: Iterable[DatasetFile], name: str) -> DatasetFile | None:
    """The file of ``files`` named ``name`` in any Unicode form; None when none is."""
    wanted = stored_name(name)
    return next((file for file in files if file.name == wanted), None)
