"""Dataset file names: what a version may call its files.

A name is a relative path of ``/``-separated parts (``train/part-0001.jsonl``):
datasets are often laid out in folders, and a downloader recreates them. The
rules keep every name safe to recreate on any common file system and honest to
read: no part may climb out (``..``), nothing absolute, no backslash, no control,
invisible or bidirectional-override character (a name shown as ``data.csv`` must
be ``data.csv``), nothing Windows refuses (``<>:"|?*``, a part ending with a dot,
device names such as ``CON`` or ``nul.txt``), and bounded lengths. Names are
stored NFC-normalised, so the same text typed on two systems is one name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from credits.storage.errors import UnsafeFileName

MAX_NAME_BYTES = 1024
MAX_PART_BYTES = 255
MAX_PARTS = 32

# Categories no name may hold: controls, format characters (bidi overrides and
# marks, zero-width spaces, the BOM), surrogates, line and paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Zero-width joiner and non-joiner are format characters that Persian, Indic
# scripts and emoji sequences need; they change no direction and hide no text.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})
_DRIVE = re.compile(r"^[A-Za-z]:")
# What Windows refuses in a name: these characters (":" would name an NTFS stream),
# a part ending with a dot, and the device names, with or without an extension.
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
_WINDOWS_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)


def safe_file_name(name: str) -> str:
    """The NFC form of ``name`` when it is a safe relative file name.

    Raises :class:`UnsafeFileName` saying the first rule it breaks.
    """
    normal = unicodedata.normalize("NFC", name)
    _check_characters(normal)
    _check_shape(normal)
    for part in normal.split("/"):
        _check_part(part)
    return normal


def _check_characters(name: str) -> None:
    if not name:
        raise UnsafeFileName("a file name may not be empty")
    if _DRIVE.match(name):
        raise UnsafeFileName("a file name may not start with a drive letter")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise UnsafeFileName(f"a file name may be at most {MAX_NAME_BYTES} bytes of UTF-8")
    for character in name:
        if character == "\\":
            raise UnsafeFileName("a file name may not hold a backslash; separate folders with /")
        if character == "\ufffd":
            raise UnsafeFileName(
                "a file name may not hold U+FFFD, the replacement character: its bytes were"
                " probably not UTF-8; send the name in UTF-8"
            )
        if character in _WINDOWS_FORBIDDEN:
            raise UnsafeFileName(
                f"a file name may not hold {character!r}, which Windows refuses in names"
            )
        if character in _ALLOWED_FORMAT:
            continue
        if unicodedata.category(character) in _FORBIDDEN_CATEGORIES:
            raise UnsafeFileName(
                f"a file name may not hold the control or invisible character "
                f"U+{ord(character):04X}"
            )


def _check_shape(name: str) -> None:
    if name.startswith("/"):
        raise UnsafeFileName("a file name must be relative, not start with /")
    if name.endswith("/"):
        raise UnsafeFileName("a file name may not end with /")
    if name.count("/") >= MAX_PARTS:
        raise UnsafeFileName(f"a file name may be at most {MAX_PARTS} folders deep")


def _check_part(part: str) -> None:
    if not part:
        raise UnsafeFileName("a file name may not hold an empty folder (//)")
    if part in {".", ".."}:
        raise UnsafeFileName(f"a file name may not hold {part!r} as a folder or name")
    if part != part.strip():
        raise UnsafeFileName("no part of a file name may start or end with white space")
    if part.endswith("."):
        raise UnsafeFileName("no part of a file name may end with a dot, which Windows drops")
    if _WINDOWS_DEVICE.match(part):
        raise UnsafeFileName(f"{part!r} names a device on Windows; choose another name")
    if len(part.encode("utf-8")) > MAX_PART_BYTES:
        raise UnsafeFileName(
            f"each part of a file name between / may be at most {MAX_PART_BYTES} bytes of UTF-8"
        )


def duplicate_names(names: Iterable[str]) -> list[str]:
    """The names that clash with an earlier one, in the order given.

    Two names clash when they are equal ignoring case and Unicode form (they
    would overwrite each other on macOS and Windows), or when one names a file
    where the other needs a folder (``train`` and ``train/a.csv``).
    """
    files: set[str] = set()
    folders: set[str] = set()
    clashes: list[str] = []
    for name in names:
        key = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
        parts = key.split("/")
        parents = {"/".join(parts[:depth]) for depth in range(1, len(parts))}
        if key in files or key in folders or parents & files:
            clashes.append(name)
            continue
        files.add(key)
        folders.update(parents)
    return clashes
